"""Performance harness: what resume costs and what it saves, measured side by side.

`python -m bench` runs every measurement and writes `bench/RESULTS.md` and
`bench/results.json`. Each ratio is taken in the same run as its reference,
with measured and reference runs alternated and repeated (medians), because
this project is benchmarked on shared 2-core machines where absolute times
drift by tens of percent while a run is in progress. `--quick` shrinks every
measurement to prove the harness works (the smoke test); its numbers mean
nothing.
"""
