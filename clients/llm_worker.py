"""The LLM worker ClientApp: one party's share of federated SPUNGE.

What a worker does: it holds the forget facts of one attribute value (plus retain facts);
on `query.unlearn_subset` it takes the coordinator's starting weights, unlearns its own
subset with the method and settings in the message, trims its task vector (TIES step 1,
done locally so that only the top entries leave the party) and sends that back.
What it sends: the trimmed task vector and, as public metadata, its attribute value and
the number of facts it unlearned. Its facts never leave it. The task vector itself is not
protected (classed plaintext in the transcript): the coordinator sees each worker's
trimmed update. Both sides record every message in their transcript ledger.

Simulation passes the facts in `layout` (partition id -> attribute value, forget facts,
retain facts); a deployment gives node config `attribute-value`, `forget-file` and
`retain-file` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from federation.errors import Pv4fadError
from federation.transcript import PayloadClass, TranscriptLedger
from llm_modules.models import load_causal_lm
from llm_modules.unlearning.data import Fact, load_facts
from llm_modules.unlearning.spunge import parameter_state, task_vector, trim_task_vector
from llm_modules.unlearning.trainer import UnlearnConfig, unlearn
from llm_modules.unlearning.wagle import build_mask

UNLEARN_SUBSET = "unlearn_subset"  # the protocol's one phase: message type query.unlearn_subset


@dataclass(frozen=True)
class WorkerData:
    """What one worker holds: its attribute value, its forget subset, the retain facts."""

    attribute_value: str
    forget: Sequence[Fact]
    retain: Sequence[Fact]


def build_llm_worker_app(layout: Mapping[int, WorkerData] | None = None) -> ClientApp:
    """The worker ClientApp; `layout` maps simulation partition ids to each worker's data."""
    app = ClientApp()

    @app.query(UNLEARN_SUBSET)
    def unlearn_subset(msg: Message, context: Context) -> Message:
        name = f"worker:{context.node_id}"
        ledger = party_ledger(name, context.run_id, str(msg.content["settings"]["transcript_dir"]))
        record_message(ledger, "received", msg, sender="coordinator", receiver=name)
        try:
            data = _worker_data(layout, context)
            reply = _unlearn_subset(msg.content, data)
        except Pv4fadError as exc:
            # A project error is this party's answer (bad file, bad settings), in one line.
            reply = RecordDict({"status": ConfigRecord({"error": str(exc)})})
        out = Message(reply, reply_to=msg)
        record_message(ledger, "sent", out, sender=name, receiver="coordinator")
        return out

    return app


# How each payload of the protocol is protected when it crosses a party boundary.
PAYLOAD_CLASSES = {
    "start": PayloadClass.PUBLIC,  # the model being unlearned: every party holds it
    "settings": PayloadClass.PUBLIC,
    "task_vector": PayloadClass.PLAINTEXT,  # a trimmed model update, in the clear
    "status": PayloadClass.PUBLIC,  # attribute value, fact count, or an error line
}


def party_ledger(party: str, run_id: int, directory: str) -> TranscriptLedger:
    """This party's ledger: a JSON-lines file under `directory`, or in memory if empty."""
    path = Path(directory) / f"{party.replace(':', '-')}.jsonl" if directory else None
    return TranscriptLedger(party, str(run_id), path)


def record_message(
    ledger: TranscriptLedger, direction: str, message: Message, *, sender: str, receiver: str
) -> None:
    """Record one federated-SPUNGE message with its byte size and payload classes."""
    content = message.content
    nbytes = sum(
        len(array.data) for record in content.array_records.values() for array in record.values()
    )
    ledger.record(
        direction=direction, round=0, phase=UNLEARN_SUBSET, sender=sender, receiver=receiver,
        message_type=f"query.{UNLEARN_SUBSET}", nbytes=nbytes,
        fields={key: PAYLOAD_CLASSES[key] for key in content},
    )


def _worker_data(layout: Mapping[int, WorkerData] | None, context: Context) -> WorkerData:
    if layout is not None:
        return layout[int(context.node_config["partition-id"])]
    config = context.node_config
    return WorkerData(
        attribute_value=str(config["attribute-value"]),
        forget=load_facts(str(config["forget-file"]), role="forget"),
        retain=load_facts(str(config["retain-file"]), role="retain"),
    )


def _unlearn_subset(content: RecordDict, data: WorkerData) -> RecordDict:
    settings = content["settings"]
    model, tokenizer = load_causal_lm(str(settings["model_path"]))
    start = {k: v.float() for k, v in content["start"].to_torch_state_dict().items()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in start:
                param.copy_(start[name].to(param.dtype))
    start = parameter_state(model)
    config = UnlearnConfig(
        method=str(settings["method"]),
        epochs=int(settings["epochs"]),
        lr=float(settings["lr"]),
        batch_size=int(settings["batch_size"]),
        beta=float(settings["beta"]) or None,  # 0: the method's own default
        seed=int(settings["seed"]),
    )
    ratio = float(settings["wagle_ratio"])
    mask = None
    if ratio < 1.0:
        mask = build_mask(str(settings["mask_kind"]), model, tokenizer, data.forget,
                          data.retain, ratio, seed=config.seed)
    unlearn(model, tokenizer, data.forget, data.retain, config, mask=mask)
    trimmed = trim_task_vector(task_vector(start, model), float(settings["keep"]))
    return RecordDict({
        "task_vector": ArrayRecord(torch_state_dict=trimmed),
        "status": ConfigRecord(
            {"attribute_value": data.attribute_value, "facts": len(data.forget)}
        ),
    })
