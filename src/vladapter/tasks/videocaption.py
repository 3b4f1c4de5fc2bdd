"""Video captioning (TVC, YC2C): "[Subs] .. [TS] .. tvc:" + frames -> caption; CIDEr."""

from __future__ import annotations

from vladapter.data.records import Record
from vladapter.tasks.base import numeric_id
from vladapter.tasks.caption import CaptionTask
from vladapter.utils.io import write_jsonl

MAX_CONTEXT_WORDS = 400


class VideoCaptionTask(CaptionTask):
    max_input_tokens = 600
    max_target_tokens = 40
    max_new_tokens = 20
    batch_scale = 1.0
    modality = "video"

    def __init__(self, name: str):
        self.name = name
        self.prefix = f"{name}:"

    def source_text(self, record: Record, prefix: bool) -> str:
        parts = [f"[Subs] {' '.join(record.context.split()[-MAX_CONTEXT_WORDS:])}"]
        if record.text:
            parts.append(record.text)
        if record.span:
            parts.append(f"[TS] {record.span[0]:.1f}-{record.span[1]:.1f}")
        if prefix:
            parts.append(self.prefix)
        return " ".join(parts)

    def write_submission(self, path, predictions, records):
        # VALUE captioning submission (TVC's format): {clip_id, vid_name, ts, descs: [{desc}]}
        path = path.with_suffix(".jsonl")
        write_jsonl(path, ({"clip_id": numeric_id(r.meta.get("clip_id", r.uid)), "vid_name": r.video,
                            "ts": r.span, "descs": [{"desc": p}]} for r, p in zip(records, predictions)))
        return path
