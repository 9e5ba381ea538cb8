"""Plain Chinese without an LLM: the common dispatcher questions and requests,
understood by keywords over the city's own data and turned into the equivalent
slash command (which then runs, and plans changes for confirmation, as typed).

    understand(city, "江北环卫所有哪些超期的案件？")   -> "/cases 江北环卫所 超期"
    understand(city, "把 500105-20261120-0001 改派给江北城管执法，占道归执法") -> "/assign … JB-ZF 占道归执法"

Only what is found verbatim counts (department names, areas, catalogue names and
synonyms, status/period/source words, case numbers); anything else is None and the
chat shows the commands. The chat says which command it understood, so a wrong
reading is visible before anything is confirmed.
"""

from __future__ import annotations

import re

from city.bundle import CityData
from city.catalogue import Source, Urgency

CASE = r"\d{6}-\d{8}-\d{4}"
_CASE = re.compile(CASE)

_DUE = [("即将超期", "即将超期"), ("快超期", "即将超期"), ("快到期", "即将超期"), ("临期", "即将超期"),
        ("超期预警", "超期预警"), ("已超期", "超期"), ("超期", "超期"), ("逾期", "超期"), ("超时", "超期")]
_PERIOD = [("今天", "今天"), ("今日", "今天"), ("昨天", "昨天"), ("本周", "本周"), ("这周", "本周"), ("本月", "近30天"),
           ("近30天", "近30天"), ("最近一个月", "近30天")]
_STATUS = {"未派遣": "未派遣", "没派遣": "未派遣", "没有派遣": "未派遣", "还没派": "未派遣", "待派遣": "待派遣",
           "未立案": "未立案", "没立案": "未立案", "未结案": "未结案", "没结案": "未结案", "未办结": "未办结",
           "没办完": "未办结", "在办": "在办", "处置中": "处置中"}
_SOURCE_WORDS = {"车巡": "车巡", "巡查车": "车巡", "机巡": "机巡", "无人机": "机巡", "市民": "市民", "热线": "热线",
                 "12345": "热线", "12319": "热线", "采集员": "采集员"}
_SUMMARY = [(("超期汇总", "超期情况", "各单位超期", "超期统计"), "overdue"), (("今日受理", "今天受理", "今天收了", "今日上报"), "today"),
            (("热点", "反复发生", "重复发生"), "hotspots"),
            (("考核", "指标", "按期处置率", "结案率", "处置率", "派遣准确率", "返工率", "满意率"), "rates")]
_FIND = ("哪些", "多少", "几件", "有没有", "列出", "查一下", "查询", "找一下", "看看", "案件", "案子", "问题")


def _scan(text: str, names: dict[str, str]) -> tuple[str | None, str]:
    """The longest name found in ``text`` (its value), and the text with it blanked."""
    for name in sorted(names, key=len, reverse=True):
        if name and name in text:
            return names[name], text.replace(name, "　", 1)
    return None, text


def _departments(city: CityData) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in city.departments:
        for name in (d.name, d.short):
            if name and len(name) >= 3:
                out[name] = d.id
    return out


def _department_types(city: CityData) -> dict[str, str]:
    return {d.type.value: d.type.value for d in city.departments if len(d.type.value) >= 2}


def _areas(city: CityData) -> dict[str, str]:
    j = city.jurisdiction
    return {a.name: a.name for areas in (j.districts, j.streets) for a in areas.values() if len(a.name) >= 2}


def _codes(city: CityData) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in city.catalogue:
        for name in (e.name, *e.synonyms):
            if len(name) >= 2:
                out.setdefault(name, e.code)
    return out


def _reason(text: str) -> str:
    m = re.search(r"(?:原因|理由|因为|由于)[:：是]?\s*(.+)$", text)
    if m:
        return m.group(1).strip(" ，。,.")
    return ""


def _after(text: str, anchor: str) -> str:
    return text.split(anchor, 1)[1].strip(" ，。,.:：") if anchor in text else ""


def understand(city: CityData, text: str) -> str | None:
    """The slash command ``text`` asks for, or None when it is not understood."""
    text = (text or "").strip()
    if not text:
        return None
    numbers = _CASE.findall(text)
    if numbers:
        return _about_case(city, text, numbers)
    for words, kind in _SUMMARY:
        if any(w in text for w in words) and not any(w in text for w in ("哪些", "列出")):
            return f"/summary {kind}"
    return _find(city, text)


def _about_case(city: CityData, text: str, numbers: list[str]) -> str | None:
    number = numbers[0]
    rest = _CASE.sub("　", text)
    if re.search(r"为什么|为何|凭什么|依据|怎么派", rest):
        return f"/why {number}"
    if re.search(r"改派|转派|派给|转给|交给|移交", rest):
        dept, left = _scan(rest, _departments(city))
        if dept is None:
            return None
        tail = re.split(r"改派给|转派给|派给|转给|交给|移交给|改派|转派|移交", left, maxsplit=1)[-1]
        reason = _reason(left) or tail.strip(" 　，。,.")
        return f"/assign {number} {dept}" + (f" {reason}" if reason else "")
    if (m := re.search(r"(紧急|较急|一般)", rest)) and re.search(r"升级|提高|调整|改为|改成|降低|降为", rest):
        reason = _reason(rest) or "调度员调整"
        return f"/urgent {number} {Urgency(m.group(1)).value} {reason}"
    if re.search(r"作废|不予立案|撤销", rest):
        reason = _reason(rest)
        return f"/void {number} {reason}" if reason else None
    if len(numbers) >= 2 and ("重复" in rest or "合并" in rest):
        return f"/merge {number} {numbers[1]}" + (f" {_reason(rest)}" if _reason(rest) else "")
    if re.search(r"驳回", rest):
        reason = _reason(rest) or _after(rest, "驳回")
        return f"/reject {number} {reason}" if reason else None
    if re.search(r"审核通过|批准|同意立案|通过审核", rest):
        return f"/approve {number}"
    if re.search(r"回复|答复", rest):
        return f"/reply {number} {'办结' if '办结' in rest else '受理'}"
    return f"/show {number}"


def _find(city: CityData, text: str) -> str | None:
    words: list[str] = []
    rest = text
    areas = _areas(city)
    depts = {name: dept for name, dept in _departments(city).items() if name not in areas}  # 观音桥街道: the street
    dept, rest = _scan(rest, depts)
    if dept:
        words.append(dept)
    area, rest = _scan(rest, areas)
    if area:
        words.append(area)
    if not dept:
        kind, rest = _scan(rest, _department_types(city))
        if kind:
            words.append(kind)
    code, rest = _scan(rest, _codes(city))
    if code:
        words.append(code)
    for table in (_DUE, _PERIOD):
        value, rest = _scan(rest, dict(table))
        if value:
            words.append(value)
    source, rest = _scan(rest, _SOURCE_WORDS)
    if source and source in {s.value for s in Source}:
        words.append(source)
    status, rest = _scan(rest, _STATUS)
    if status:
        words.append(status)
    if not words or not any(w in text for w in _FIND):
        return None
    return "/cases " + " ".join(words)
