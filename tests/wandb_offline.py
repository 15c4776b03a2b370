"""Read the records of an offline W&B run file (``run-<id>.wandb``) for the tests.

The file is W&B's 7-byte header (":W&B", magic, version) followed by a LevelDB-style log: 32 KiB
blocks of chunks, each with a 7-byte header (crc32, little-endian length, type FULL/FIRST/MIDDLE/
LAST). Every reassembled payload is one ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    blob = Path(path).read_bytes()
    assert blob[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(blob):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", blob[pos : pos + 7])
        data = blob[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind in (FULL, FIRST):
            pending = data
        else:
            pending += data
        if kind in (FULL, LAST):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            records.append(rec)
    return records


def run_contents(path: Path) -> dict:
    """history rows, summary values, run metadata (group, tags, job type) of one offline run file."""
    import json

    out = {"history": [], "summary": {}, "group": None, "tags": [], "config": {}, "job_type": None, "name": None}
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "run":
            out["group"], out["tags"], out["job_type"] = rec.run.run_group, list(rec.run.tags), rec.run.job_type
            out["name"] = rec.run.display_name
            out["config"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                  for i in rec.run.config.update})
        elif kind == "config":
            out["config"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.config.update})
    return out


def logged_json(run_file: Path, contents: dict, key: str) -> dict:
    """The media file (table, chart data) a run logged under ``key``, from the run's files/ folder."""
    import json

    return json.loads((Path(run_file).parent / "files" / contents["summary"][f"{key}/path"]).read_text())


def exit_code(run_file: Path) -> int | None:
    """The exit code the run finished with (None: the file has no exit record)."""
    codes = [rec.exit.exit_code for rec in read_records(run_file) if rec.WhichOneof("record_type") == "exit"]
    return codes[-1] if codes else None
