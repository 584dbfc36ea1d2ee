"""The data owner's ClientApp of federated LinC: one party's few labelled prompts.

What an owner does: on `query.fit_linc` it takes the coordinator's current W and b of each
calibration job (a prompt template with its demonstrations), scores its own labelled
inputs under that prompt with the (public) model, runs `local_epochs` of LinC's SGD on
them from W and b, and sends the new W and b back with how many examples it used.
What it sends: per job, W (KxK) and b (K), and its example counts as public metadata. Its
texts, labels and label probabilities never leave it. W and b are not protected (classed
plaintext in the transcript): the coordinator sees each owner's update, which for a few
examples says something about them (see docs/calibration.md). Both sides record every
message in their transcript ledger.

Simulation passes each owner's examples per job in `layout` (partition id -> job id ->
examples); a deployment gives node config `examples-file` (used for every job) instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients.llm_worker import party_ledger
from federation.errors import Pv4fadError
from federation.transcript import PayloadClass, TranscriptLedger
from llm_modules.calibration.cache import ProbabilityCache
from llm_modules.calibration.calibrators import LinC
from llm_modules.calibration.data import Example, load_examples
from llm_modules.calibration.prompts import prompt_from_json
from llm_modules.calibration.scoring import LabelScorer

FIT_LINC = "fit_linc"  # the protocol's one phase: message type query.fit_linc

# How each payload of the protocol is protected when it crosses a party boundary.
PAYLOAD_CLASSES = {
    "weights": PayloadClass.PLAINTEXT,  # W and b per job, in the clear
    "settings": PayloadClass.PUBLIC,  # model path, prompts, demonstrations, SGD settings
    "status": PayloadClass.PUBLIC,  # example counts, or an error line
}


@dataclass(frozen=True)
class OwnerData:
    """What one owner holds: its labelled inputs for each calibration job."""

    examples: Mapping[str, Sequence[Example]]


def build_calibration_owner_app(layout: Mapping[int, OwnerData] | None = None) -> ClientApp:
    """The owner ClientApp; `layout` maps simulation partition ids to each owner's data."""
    app = ClientApp()

    @app.query(FIT_LINC)
    def fit_linc(msg: Message, context: Context) -> Message:
        name = f"owner:{context.node_id}"
        settings = msg.content["settings"]
        ledger = party_ledger(name, context.run_id, str(settings["transcript_dir"]))
        round_index = int(settings["round"])
        record_message(ledger, "received", msg, round_index, sender="coordinator", receiver=name)
        try:
            reply = local_round(msg.content, _owner_data(layout, context, settings))
        except Pv4fadError as exc:
            # A project error is this party's answer (bad file, unknown class), in one line.
            reply = RecordDict({"status": ConfigRecord({"error": str(exc)})})
        out = Message(reply, reply_to=msg)
        record_message(ledger, "sent", out, round_index, sender=name, receiver="coordinator")
        return out

    return app


def record_message(
    ledger: TranscriptLedger, direction: str, message: Message, round_index: int, *,
    sender: str, receiver: str,
) -> None:
    """Record one federated-LinC message with its byte size and payload classes."""
    content = message.content
    nbytes = sum(
        len(array.data) for record in content.array_records.values() for array in record.values()
    )
    ledger.record(
        direction=direction, round=round_index, phase=FIT_LINC, sender=sender, receiver=receiver,
        message_type=f"query.{FIT_LINC}", nbytes=nbytes,
        fields={key: PAYLOAD_CLASSES[key] for key in content},
    )


def _owner_data(
    layout: Mapping[int, OwnerData] | None, context: Context, settings: ConfigRecord
) -> OwnerData:
    if layout is not None:
        return layout[int(context.node_config["partition-id"])]
    jobs = json.loads(str(settings["jobs"]))
    examples = load_examples(str(context.node_config["examples-file"]), role="owner examples")
    return OwnerData({job["id"]: examples for job in jobs})


def local_round(content: RecordDict, data: OwnerData) -> RecordDict:
    """Score this owner's inputs under each job's prompt and train W, b locally."""
    settings = content["settings"]
    weights = content["weights"]
    cache = ProbabilityCache(str(settings["cache_path"]) or None)
    scorer = LabelScorer(str(settings["model_path"]), cache)
    updated: dict[str, Array] = {}
    counts: dict[str, int] = {}
    for job in json.loads(str(settings["jobs"])):
        spec = prompt_from_json(job["prompt"], f"job {job['id']}")
        mine = list(data.examples.get(job["id"], ()))
        counts[job["id"]] = len(mine)
        if not mine:
            continue
        unknown = sorted({e.label for e in mine} - set(spec.classes))
        if unknown:
            raise Pv4fadError(f"job {job['id']}: labels {unknown} are not among {spec.classes}")
        demos = [Example(text, label) for text, label in job["demonstrations"]]
        probs = scorer.probabilities(spec, demos, [e.text for e in mine])
        labels = np.array([spec.classes.index(e.label) for e in mine])
        linc = LinC(float(job["lr"]), int(settings["local_epochs"]),
                    seed=int(settings["seed"]) * 1000 + int(settings["round"]),
                    W=weights[f"{job['id']}/W"].numpy(), b=weights[f"{job['id']}/b"].numpy())
        linc.train(probs, labels)
        updated[f"{job['id']}/W"] = Array(linc.W)
        updated[f"{job['id']}/b"] = Array(linc.b)
    return RecordDict({
        "weights": ArrayRecord(updated),
        "status": ConfigRecord({"counts": json.dumps(counts)}),
    })
