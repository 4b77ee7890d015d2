"""greentune from Python: run, resume and analyse a search from a notebook or a script.

>>> import greentune
>>> sorted(greentune.__all__)
['Results', 'UsageError', 'analyze', 'list_techniques', 'resume', 'run']

``import greentune`` loads neither Ray nor torch; each function imports what
it needs when it is called. The ``greentune`` command is a thin layer over
these functions. See ``greentune.api`` for each one.
"""

from .api import Results, UsageError, analyze, list_techniques, resume, run

__all__ = ["Results", "UsageError", "analyze", "list_techniques", "resume", "run"]
