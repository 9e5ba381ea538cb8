"""Plain Chinese understood without an LLM (agents/chat/intents.py): the command each
sentence is read as, over the sample city's data; what is not understood is None."""

from __future__ import annotations

import pytest

from agents.chat.intents import understand

N1, N2 = "500105-20261120-0001", "500105-20261120-0002"


@pytest.mark.parametrize("text, command", [
    ("江北环卫所有哪些超期的案件？", "/cases JB-HW 超期"),
    ("江北区今天车巡发现的暴露垃圾还有哪些没派遣？", "/cases 江北区 06010 今天 车巡 未派遣"),
    ("渝中区即将超期的案件有哪些", "/cases 渝中区 即将超期"),
    ("环卫有多少超期案件", "/cases 环卫 超期"),
    ("观音桥街道有哪些未结案的问题", "/cases 观音桥街道 未结案"),  # the street, not its office
    ("江北区治理中心有哪些超期案件", "/cases JB-XT 超期"),
    ("各单位超期情况", "/summary overdue"),
    ("本月结案率是多少", "/summary rates"),
    (f"把 {N1} 改派给江北城管执法，原因：占道经营归执法", f"/assign {N1} JB-ZF 占道经营归执法"),
    (f"{N1} 转给江北市政所", f"/assign {N1} JB-SZ"),
    (f"{N1} 为什么派给环卫所", f"/why {N1}"),
    (f"{N1} 怎么样了", f"/show {N1}"),
    (f"{N1} 升级为紧急，因为靠近学校", f"/urgent {N1} 紧急 靠近学校"),
    (f"{N1} 作废，原因是重复上报", f"/void {N1} 重复上报"),
    (f"{N1} 和 {N2} 重复，合并", f"/merge {N1} {N2}"),
    (f"{N1} 审核通过", f"/approve {N1}"),
    (f"给 {N1} 起草办结回复", f"/reply {N1} 办结"),
])
def test_understood(city, text, command):
    assert understand(city, text) == command


@pytest.mark.parametrize("text", [
    "你好", "帮我写首诗", "", "今天天气怎么样",
    f"把 {N1} 改派给隔壁老王",  # no such department: nothing is guessed
    f"{N1} 作废",  # voiding needs a reason
])
def test_not_understood(city, text):
    assert understand(city, text) is None
