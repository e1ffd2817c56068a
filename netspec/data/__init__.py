"""The data room: where a spec's examples come from, as host numpy arrays. Never jax (a test checks).

sources.py   SOURCES, the named data sets' known facts (STANDARD), DataInfo
labels.py    Labels: a summary of any source's targets, for the label rules
formats.py   the readers of IDX, .npy/.npz and CSV files, every size checked before it is read
download.py  where the named data sets are looked for, and their verified download
arrays.py    describe(data) -> DataInfo for check; load(data) -> Arrays; BatchOrder
"""
