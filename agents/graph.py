"""The case pipeline, assembled in one place:

    intake → triage → dedupe ─(open case nearby)→ END (evidence attached)
                         └→ route → draft_record → draft_reply → review_gate ─(reject)→ END
                                                                      └→ dispatch → END

Each node is a small function of the state; the LLM, the store and the city
data come from the runtime :class:`~agents.context.Context`. Every step works
without an LLM (the offline policy) and says which policy decided.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents import nodes
from agents.context import Context
from agents.state import PipelineState


def build(checkpointer=None):
    g = StateGraph(PipelineState, context_schema=Context)
    g.add_node("intake", nodes.intake)
    g.add_node("triage", nodes.triage)
    g.add_node("dedupe", nodes.dedupe)
    g.add_node("route", nodes.route)
    g.add_node("draft_record", nodes.draft_record)
    g.add_node("draft_reply", nodes.draft_reply)
    g.add_node("review_gate", nodes.review_gate)
    g.add_node("dispatch", nodes.dispatch)

    g.add_edge(START, "intake")
    g.add_edge("intake", "triage")
    g.add_conditional_edges("triage", nodes.after_triage, ["dedupe", END])
    g.add_conditional_edges("dedupe", nodes.after_dedupe, ["route", END])
    g.add_edge("route", "draft_record")
    g.add_edge("draft_record", "draft_reply")
    g.add_edge("draft_reply", "review_gate")
    g.add_conditional_edges("review_gate", nodes.after_review, ["dispatch", END])
    g.add_edge("dispatch", END)
    return g.compile(checkpointer=checkpointer, name="case_pipeline")


#: For LangGraph's developer tools (langgraph.json): no checkpointer, the server brings its own.
graph = build()
