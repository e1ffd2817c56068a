"""The train room: what the host does around the compiled chunks, and the run directory it writes.

loop.py        run(spec, ...) -> RunResult: the sitting, the chunk loop, the closing
callbacks.py   what the host does between chunks: scalars, histograms, evaluation, checkpoints
feed.py        the data on the device and each chunk's batches (resident or streamed)
summaries.py   TensorBoard event files; graph.py draws the step as a TensorBoard graph
histograms.py  TensorBoard histograms of many tensors and runs in one numpy pass
checkpoint.py  safetensors checkpoints, written atomically, restored past damaged ones
rundir.py      the run directory: claimed, locked, written whole, reopened
resumption.py  what a resume may change, and ran.json / changes.json
sitting.py     one sitting of a run: its lock, its phase, the paragraph when it stops early
interrupts.py  Ctrl-C and SIGTERM: when they act, and what a stop raises
report.py      the progress bar and the closing report
"""
