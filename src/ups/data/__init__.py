"""Data for the pipeline: the built-in Burgers generator (`burgers`), the streaming
PDEBench-layout reader (`pdebench`) and verified fetching of data files (`download`).

Submodules are imported explicitly so that `import ups.data` stays cheap.
"""
