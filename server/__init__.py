"""Coordinator ServerApps: the PV4FAD workflow, SISA, federated unlearning."""
