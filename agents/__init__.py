"""LangGraph agents: the case pipeline and the dispatch chat (issue: the case pipeline)."""
