"""The data owner's ClientApp for federated post-training.

What a data owner does: it holds an SFT set and a preference set (and optionally held-out
sets); on `query.post_train` it reads the settings (method, lambda, steps, the public
starting model's path, ...), post-trains that model on its own data with the very trainer
the CLI uses, keeps the trained model on its own disk, and replies.
What it sends: metrics (final f_SFT and f_DPO on its training sets and, if it has them,
held-out sets; gradient evaluations per objective; training seconds) and the SHA-256 digest
of the trained weights, which later lets anyone check that a model handed over is this one.
No example, gradient or weight leaves it. The metrics are aggregate statistics of its data
in the clear (classed plaintext in the transcript, so an audit shows them).

Simulation passes the data in `layout` (partition id -> OwnerData); a deployment gives
node config `sft-file`, `preference-file`, optional `sft-eval-file` and
`preference-eval-file`, and `out-dir`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.llm_worker import party_ledger
from federation.errors import Pv4fadError
from federation.transcript import PayloadClass, TranscriptLedger
from llm_modules.alignment.post_training import PostTrainConfig
from llm_modules.alignment.post_training_run import (
    LoraSettings,
    PostTrainingData,
    run_post_training,
)

POST_TRAIN = "post_train"  # the protocol's one phase: message type query.post_train

PAYLOAD_CLASSES = {
    "settings": PayloadClass.PUBLIC,  # method, hyper-parameters, the public model's path
    "metrics": PayloadClass.PLAINTEXT,  # aggregate losses of the owner's data, in the clear
    "status": PayloadClass.PUBLIC,  # model digest, or an error line
}


@dataclass(frozen=True)
class OwnerData:
    """One data owner's data and where it keeps the trained model ("" : not saved)."""

    data: PostTrainingData
    out_dir: str = ""


def build_data_owner_app(layout: Mapping[int, OwnerData] | None = None) -> ClientApp:
    """The data owner's ClientApp; `layout` maps simulation partition ids to owners."""
    app = ClientApp()

    @app.query(POST_TRAIN)
    def post_train(msg: Message, context: Context) -> Message:
        name = f"owner:{context.node_id}"
        settings = msg.content["settings"]
        ledger = party_ledger(name, context.run_id, str(settings["transcript_dir"]))
        record_message(ledger, "received", msg, sender="coordinator", receiver=name)
        try:
            reply = _post_train(settings, _owner(layout, context))
        except Pv4fadError as exc:
            # A project error is this party's answer (bad file, bad settings), in one line.
            reply = RecordDict({"status": ConfigRecord({"error": str(exc)})})
        out = Message(reply, reply_to=msg)
        record_message(ledger, "sent", out, sender=name, receiver="coordinator")
        return out

    return app


def record_message(
    ledger: TranscriptLedger, direction: str, message: Message, *, sender: str, receiver: str
) -> None:
    """Record one message with its payload classes; no array crosses in this protocol."""
    ledger.record(
        direction=direction, round=0, phase=POST_TRAIN, sender=sender, receiver=receiver,
        message_type=f"query.{POST_TRAIN}", nbytes=0,
        fields={key: PAYLOAD_CLASSES[key] for key in message.content},
    )


def _owner(layout: Mapping[int, OwnerData] | None, context: Context) -> OwnerData:
    if layout is not None:
        return layout[int(context.node_config["partition-id"])]
    config = context.node_config
    optional = {key: str(config[key]) if key in config else None
                for key in ("sft-eval-file", "preference-eval-file")}
    data = PostTrainingData.from_files(
        str(config["sft-file"]), str(config["preference-file"]),
        optional["sft-eval-file"], optional["preference-eval-file"],
    )
    return OwnerData(data, str(config.get("out-dir", "")))


def settings_record(config: PostTrainConfig) -> dict[str, str | int | float]:
    """The trainer's settings as a flat record (every field of PostTrainConfig)."""
    return {key: getattr(config, key) for key in PostTrainConfig.__dataclass_fields__}


def _post_train(settings: ConfigRecord, owner: OwnerData) -> RecordDict:
    fields = PostTrainConfig.__dataclass_fields__
    config = PostTrainConfig(**{key: type(getattr(PostTrainConfig(), key))(settings[key])
                                for key in fields})
    rank = int(settings["lora_rank"])
    lora = LoraSettings(rank, float(settings["lora_alpha"])) if rank else None
    result = run_post_training(
        str(settings["model_path"]), owner.data, config,
        reference_path=str(settings["reference_path"]) or None, lora=lora,
        out_dir=owner.out_dir or None,
    )
    metrics = {f"train_{k}": v for k, v in result["train"].items()}
    if result["held_out"]:
        metrics |= {f"held_out_{k}": v for k, v in result["held_out"].items()}
    metrics |= {f"updates_{k}": v for k, v in result["updates"].items()}
    metrics["seconds"] = result["seconds"]
    return RecordDict({
        "metrics": MetricRecord(metrics),
        "status": ConfigRecord({"digest": result["digest"], "method": result["method"]}),
    })
