"""LangGraph agents: the case pipeline (``graph.py`` assembles it from ``nodes.py``
over ``state.py``, run by ``pipeline.py`` with ``context.py``), the LLM client
(``llm.py``, ``config.py``), the offline policy (``offline.py``), the injection
scan (``safety.py``) and the embedded local model (``local_model.py``)."""
