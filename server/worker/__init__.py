"""The worker role: the engine, the art filters and the job loop. The only server package that imports torch.

`run.py worker` runs it alone; `run.py serve` runs it beside the web role unless
`inference_enabled` is off. Web processes never import this package.
"""
