"""The Flower ClientApp every party runs; the node's role picks PNS or bank logic.

A deployment gives each SuperNode its settings as node config
(`role`, `party-id`, `data-root`, `scenario`, `state-dir`); a simulation passes the same
settings per partition id. Each protocol phase is one query message type
(`query.<phase>`), answered by the method of that name on the party.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients.bank import Bank
from clients.party import NodeSettings, Party, process_stats
from clients.pns import PaymentNetwork
from federation.errors import Pv4fadError
from federation.messages import PHASES, Envelope

ROLES: dict[str, type[Party]] = {"pns": PaymentNetwork, "bank": Bank}

Handler = Callable[[Message, Context], Message]


def build_client_app(layout: Mapping[int, Mapping[str, Any]] | None = None) -> ClientApp:
    """A ClientApp; `layout` maps simulation partition ids to node settings."""
    app = ClientApp()
    for phase in PHASES:
        app.query(phase)(_handler(phase, layout))
    return app


def _handler(phase: str, layout: Mapping[int, Mapping[str, Any]] | None) -> Handler:
    def handle(msg: Message, context: Context) -> Message:
        node_config = (layout[int(context.node_config["partition-id"])] if layout is not None
                       else _node_config(context))
        settings = NodeSettings.from_node_config(node_config)
        envelope = Envelope.from_message(msg)
        try:
            _injected_fault(settings, phase, float(envelope.meta.get("timeout_s", 60)))
            party = ROLES[settings.role](settings, envelope)
            out = _corrupted(settings, phase, getattr(party, phase)())
        except Pv4fadError as exc:
            # A project error is the party's answer (bad data, bad payload): named, one line.
            out = Envelope(meta={"phase": phase, "party_id": settings.party_id},
                           public={"error": str(exc), **process_stats()})
        return Message(out.to_record(), reply_to=msg)

    return handle


def _node_config(context: Context) -> Mapping[str, Any]:
    """A deployed SuperNode's own node config; or, for a SuperNode simulated by `flwr run`
    against a simulation SuperLink (which knows only its partition id), its entry in the
    layout the ServerApp wrote to RUN_DIR/parties/layout.json before the first message."""
    cfg = context.node_config
    if "role" in cfg or "partition-id" not in cfg:
        return cfg
    import json
    from pathlib import Path

    from federation.simulate import LAYOUT_FILE

    path = Path(str(context.run_config["run-dir"])) / "parties" / LAYOUT_FILE
    try:
        return json.loads(path.read_text())[str(int(cfg["partition-id"]))]
    except (OSError, KeyError, ValueError) as exc:
        raise Pv4fadError(f"simulated SuperNode {cfg['partition-id']}: no settings in {path} "
                          f"({exc}); is the run config's simulation = true?") from None


def _injected_fault(settings: NodeSettings, phase: str, timeout_s: float) -> None:
    """Resilience testing: `fail-at = "<phase>"` crashes, `"<phase>:hang"` stops answering,
    `"<phase>:garbage"` answers with a corrupted payload (see `_corrupted`)."""
    target, _, mode = settings.fail_at.partition(":")
    if target != phase or mode == "garbage":
        return
    if mode == "hang":
        time.sleep(timeout_s + 5)
    raise RuntimeError(f"{settings.party_id} crashed in phase {phase} (injected fault)")


def _corrupted(settings: NodeSettings, phase: str, out: Envelope) -> Envelope:
    """`"<phase>:garbage"`: one bit of every sealed payload flipped, as a faulty party or
    a faulty link would deliver it."""
    if settings.fail_at != f"{phase}:garbage":
        return out
    flipped = {}
    for peer, blob in out.sealed.items():
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0x01
        flipped[peer] = bytes(bad)
    return Envelope(meta=out.meta, public=out.public, sealed=flipped)


# Deployment entry point (`clientapp = "clients.app:app"`): settings from node config.
app = build_client_app()
