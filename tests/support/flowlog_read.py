"""Reads fovea flow-log files with pyarrow and prints them as JSON, for tests.

Usage: flowlog_read.py DIR FORMAT            every completed file (flows-*.parquet / *.arrows), oldest first:
                                              {"files": [...], "schema": {name: type}, "metadata": {...}, "rows": [...]}
       flowlog_read.py --watch DIR FORMAT S   for S seconds, reads every completed file as soon as it appears;
                                              prints "ready", then {"read": n, "errors": [...]} (a reader must never see a partial file)
"""
import glob
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq


def read(path, fmt):
    if fmt == "parquet":
        return pq.read_table(path)
    with open(path, "rb") as f:
        return ipc.open_stream(f).read_all()


def rows(table):
    cols = {}
    for field in table.schema:
        col = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            col = col.cast(pa.int64())
        elif pa.types.is_dictionary(field.type):
            col = col.cast(field.type.value_type)
        cols[field.name] = col.to_pylist()
    out = []
    for i in range(table.num_rows):
        row = {}
        for name, values in cols.items():
            v = values[i]
            if isinstance(v, list) and v and isinstance(v[0], tuple):
                v = dict(v)
            elif isinstance(v, list) and not v and name == "attributes":
                v = {}
            row[name] = v
        out.append(row)
    return out


def completed(directory, fmt):
    ext = "parquet" if fmt == "parquet" else "arrows"
    return sorted(glob.glob(os.path.join(directory, f"flows-*.{ext}")))


def main():
    if sys.argv[1] == "--watch":
        directory, fmt, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
        seen, errors = set(), []
        print("ready", flush=True)
        end = time.time() + seconds
        while time.time() < end:
            for path in completed(directory, fmt):
                if path in seen:
                    continue
                seen.add(path)
                try:
                    read(path, fmt)
                except FileNotFoundError:
                    pass  # deleted by the disk budget between listing and reading
                except Exception as e:  # noqa: BLE001 - any failure to read is what we look for
                    errors.append(f"{path}: {e}")
            time.sleep(0.005)
        print(json.dumps({"read": len(seen), "errors": errors}))
        return
    directory, fmt = sys.argv[1], sys.argv[2]
    files = completed(directory, fmt)
    result = {"files": [os.path.basename(f) for f in files], "rows": []}
    for path in files:
        table = read(path, fmt)
        result["schema"] = {f.name: str(f.type) for f in table.schema}
        result["metadata"] = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        result["rows"].extend(rows(table))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
