"""The catalogue data: national list + curated attributes + local extensions.

Loads the bundled city data, checks its shape and consistency, checks that a
broken data folder fails with a message naming the file and the field, and
checks search quality on a table of realistic citizen / hotline / patrol
phrasings (the expected class must be among the top 3 事件 hits).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import city.settings
from city.catalogue import Catalogue, Kind, Risk, Source, Urgency, load_catalogue
from city.errors import DataError

DATA = Path(city.settings.BUNDLED_CITY_DATA) / "catalogue"
NATIONAL_COUNT = 404  # GB/T 47678.5-2026 as imported: 153 部件 + 251 事项 rows (with gaps)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue(DATA)


def _local_rows() -> list[dict]:
    return yaml.safe_load((DATA / "local.yaml").read_text(encoding="utf-8"))


def _curated_rows() -> list[dict]:
    return yaml.safe_load((DATA / "curated.yaml").read_text(encoding="utf-8"))


# -- shape and counts ---------------------------------------------------------------


def test_whole_catalogue_loads_with_expected_counts(cat):
    local = [e for e in cat if e.local_extension]
    national = [e for e in cat if not e.local_extension]
    assert len(national) == NATIONAL_COUNT
    assert len(local) == len(_local_rows())
    assert 5 <= len(local) <= 10
    assert len(cat) == NATIONAL_COUNT + len(local)
    curated = [e for e in national if e.curated]
    assert len(curated) >= 60
    assert sum(e.kind is Kind.PART for e in curated) >= 3  # 部件 are represented too


def test_keys_unique_and_part_event_twins_both_present(cat):
    keys = [e.key for e in cat]
    assert len(keys) == len(set(keys))
    rows = _curated_rows() + _local_rows()
    assert len({(r["kind"], r["code"]) for r in rows}) == len(rows)
    assert (Kind.PART, "01002") in cat and (Kind.EVENT, "01002") in cat
    assert cat.get("01002", kind="部件").name == "污水井盖"
    assert cat.get("事件:01002").name == "污水井盖异常"
    assert cat.get("01002").kind is Kind.EVENT  # a bare code means the 事件
    # the twin is found through related()
    assert cat.get("部件:01002") in cat.related(cat.get("事件:01002"))


def test_legacy_codes(cat):
    assert cat.get("01-10").code == "06010"
    assert cat.get("01-10").name == "暴露垃圾"
    assert cat.get("0110").code == "06010"
    # CJ/T 214's 04 突发事件 codes (e.g. 0401 路面塌陷) clash with GB/T 30428.2-2013's
    # 04 街面秩序 (04-01 无照经营游商); the local classes carry them prefixed, so the
    # 2013 code still finds the national class.
    assert cat.get("04-01").code == "09001"
    assert cat.get("91001").legacy_code == "CJ/T214-0401"


def test_must_have_classes_are_curated(cat):
    must = [
        # manhole covers and drains
        "01001", "01002", "01003", "01004", "01005", "01006", "01007", "01010", "01011", "01018", "01023",
        "01037", "01054",
        "02004", "02010", "02014", "02017", "02025", "02043",
        "03001", "03003", "03005", "03006", "03007",
        "04002", "04011", "04013",
        "06001", "06007", "06009", "06010", "06011", "06012", "06013", "06014", "06017", "06020", "06023",
        "06025", "06026", "06027", "06028", "06029", "06030", "06034", "06036", "06037", "06040", "06042",
        "06045", "06046", "06049", "06050", "06051",
        "07001", "07003", "07006", "07007",
        "08001", "08002", "08003", "08004", "08005", "08007", "08011", "08012",
        "09001", "09004", "09005", "09006", "09009", "09010", "09011", "09012", "09021",
        "10001", "10002",
    ]
    missing = [c for c in must if not cat.get(c, kind="事件").curated]
    assert not missing
    manholes = [e for e in cat if e.kind is Kind.EVENT and e.curated and "井盖" in e.name]
    assert len(manholes) >= 10
    for code in ["01002", "03005", "04002"]:
        assert cat.get(code, kind="部件").curated


def test_local_extensions(cat):
    national_names = {e.name for e in cat if not e.local_extension}
    local = [e for e in cat if e.local_extension]
    for e in local:
        assert e.code.startswith("9") and e.major_code == "91", e.key
        assert e.major_name == "扩展事件类（本地）"
        assert e.name not in national_names, f"{e.name} duplicates a national class"
        assert e.curated
    names = {e.name for e in local}
    for needed in ["道路塌陷", "道路积水", "供水管道破裂", "燃气泄漏", "下水道堵塞或冒溢", "桥梁隧道病害"]:
        assert needed in names


# -- attribute quality ----------------------------------------------------------------


_HOURS = {"工作时": 1.0, "小时": 1.0, "工作日": 8.0}  # rough, for ordering only


def _hours(d) -> float:
    return d.value * _HOURS[d.unit]


def test_curated_entries_are_complete(cat):
    for e in cat:
        if not e.curated:
            continue
        assert e.definition and len(e.definition) >= 10, e.key
        assert len(e.synonyms) >= 5, e.key
        assert len(set(e.synonyms)) == len(e.synonyms), f"{e.key}: duplicate synonyms"
        assert all(s.strip() == s and len(s) >= 2 for s in e.synonyms), e.key
        assert len(e.filing_condition) >= 4 and len(e.closing_condition) >= 4, e.key
        assert "{name}" not in e.filing_condition + e.closing_condition, e.key
        assert e.sources, e.key
        assert set(e.time_limits) == set(Urgency)
        t = e.time_limits
        assert _hours(t[Urgency.URGENT]) <= _hours(t[Urgency.HIGH]) <= _hours(t[Urgency.NORMAL]), e.key
        assert all(cat.get(r).key != e.key for r in e.related), f"{e.key} relates to itself"


def test_no_synonym_is_shared_between_two_event_classes(cat):
    owner: dict[str, str] = {}
    for e in cat:
        if e.kind is not Kind.EVENT:
            continue
        for s in e.synonyms:
            assert owner.setdefault(s, e.code) == e.code, f"{s!r} is a synonym of {owner[s]} and {e.code}"


def test_risk_and_round_the_clock_limits_are_consistent(cat):
    for e in cat:
        if not e.curated:
            continue
        if e.risk_level is Risk.RED:
            assert e.default_priority is Urgency.URGENT, e.key
        # calendar hours only for safety work that runs day and night
        if any(d.unit == "小时" for d in e.time_limits.values()):
            assert e.risk_level in (Risk.RED, Risk.ORANGE, Risk.YELLOW), e.key
    assert cat.get("91001").risk_level is Risk.RED  # 道路塌陷
    assert cat.get("91004").risk_level is Risk.RED  # 燃气泄漏
    assert cat.get("06010").risk_level is Risk.GREEN  # 暴露垃圾: appearance only
    # manhole covers follow the 广州/天津 rule: fixed within 6 hours
    assert str(cat.get("事件:01023").time_limits[Urgency.HIGH]) == "6小时"


def test_sources_respect_what_a_camera_can_see(cat):
    cameras = {Source.VEHICLE, Source.DRONE}
    for code in ["06028", "08001", "06027", "07002", "06041", "91004"]:  # noise, smell, hand-outs...
        assert not cameras & set(cat.get(code).sources), code
    for code in ["06001", "06025", "06011", "08004"]:  # rooftops, rivers, garbage heaps, sites
        assert Source.DRONE in cat.get(code).sources, code
    for code in ["03007", "07006", "07001"]:  # shop signs and their text: not from a nadir drone
        assert Source.DRONE not in cat.get(code).sources, code


# -- bad data fails loudly ------------------------------------------------------------------


def _broken_copy(tmp_path: Path, filename: str, mutate) -> Path:
    folder = tmp_path / "catalogue"
    shutil.copytree(DATA, folder)
    path = folder / filename
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(rows)
    path.write_text(yaml.safe_dump(rows, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def _first(rows, code, kind="事件"):
    return next(r for r in rows if r["code"] == code and r["kind"] == kind)


def test_copied_folder_loads(tmp_path):
    folder = _broken_copy(tmp_path, "curated.yaml", lambda rows: None)
    assert len(load_catalogue(folder)) == len(load_catalogue(DATA))


@pytest.mark.parametrize(
    "filename, mutate, field",
    [
        ("curated.yaml", lambda rows: _first(rows, "06010")["time_limits"].update({"一般": "3天"}), "time_limits"),
        ("curated.yaml", lambda rows: _first(rows, "06010")["time_limits"].pop("较急"), "time_limits"),
        ("curated.yaml", lambda rows: _first(rows, "06042").update(risk_level="紫"), "risk_level"),
        ("curated.yaml", lambda rows: _first(rows, "06042").update(sources=["卫星"]), "sources"),
        ("curated.yaml", lambda rows: _first(rows, "06042").update(filing_condition=""), "filing_condition"),
        ("curated.yaml", lambda rows: _first(rows, "06042").update(synonym=["错字段"]), "synonym"),
        ("curated.yaml", lambda rows: _first(rows, "06042").update(code="6042"), "code"),
        ("local.yaml", lambda rows: rows[0].update(default_priority="特急"), "default_priority"),
        ("local.yaml", lambda rows: rows[0].pop("major_name"), "major_name"),
    ],
)
def test_bad_field_names_file_and_field(tmp_path, filename, mutate, field):
    folder = _broken_copy(tmp_path, filename, mutate)
    with pytest.raises(DataError) as err:
        load_catalogue(folder)
    msg = str(err.value)
    assert filename in msg
    assert field in msg


def test_name_mismatch_names_file_and_both_names(tmp_path):
    folder = _broken_copy(tmp_path, "curated.yaml", lambda rows: _first(rows, "06010").update(name="暴露垃圾堆"))
    with pytest.raises(DataError) as err:
        load_catalogue(folder)
    msg = str(err.value)
    assert "curated.yaml" in msg and "06010" in msg
    assert "暴露垃圾堆" in msg and "'暴露垃圾'" in msg


def test_code_not_in_national_list(tmp_path):
    def add_unknown(rows):
        rows.append({**_first(rows, "06010"), "code": "06099", "name": None})

    folder = _broken_copy(tmp_path, "curated.yaml", add_unknown)
    with pytest.raises(DataError, match=r"curated\.yaml.*06099"):
        load_catalogue(folder)


def test_curated_twice(tmp_path):
    folder = _broken_copy(tmp_path, "curated.yaml", lambda rows: rows.append(dict(_first(rows, "06010"))))
    with pytest.raises(DataError, match=r"curated\.yaml.*事件:06010.*twice"):
        load_catalogue(folder)


def test_unknown_related_code(tmp_path):
    folder = _broken_copy(tmp_path, "curated.yaml", lambda rows: _first(rows, "06010")["related"].append("06999"))
    with pytest.raises(DataError) as err:
        load_catalogue(folder)
    msg = str(err.value)
    assert "curated.yaml" in msg and "事件:06010" in msg and "field related" in msg and "06999" in msg


def test_local_code_clashing_with_national(tmp_path):
    folder = _broken_copy(tmp_path, "local.yaml", lambda rows: rows[0].update(code="06010"))
    with pytest.raises(DataError, match="事件:06010"):
        load_catalogue(folder)


# -- search quality ---------------------------------------------------------------------

MANHOLE = [
    "01001", "01002", "01003", "01005", "01006", "01007", "01008", "01009", "01010", "01011",
    "01012", "01014", "01015", "01017", "01018", "01019", "01020", "01021", "01022", "01023",
]  # any 井盖 class: a caller rarely knows whose cover it is (01023 不明井盖异常 is the default)

# (what a citizen / hotline operator / patrol report says, acceptable 事件 codes)
SEARCH_TABLE = [
    # citizens and hotline callers, short phrasings
    ("井盖破了", MANHOLE),
    ("我家楼下的井盖没了，晚上很危险", MANHOLE),
    ("车一压井盖就哐当哐当响", MANHOLE),
    ("人行道上有个下水道盖子翻了", MANHOLE),
    ("路口的污水井盖碎了一半", ["01002"]),
    ("写着燃气的井盖缺了个角", ["01011"]),
    ("雨水箅子被树叶堵死了", ["01004"]),
    ("路边排水的铁格栅不见了", ["01004"]),
    ("路边垃圾堆了好几天没人管", ["06010", "06011"]),
    ("小区门口有人摆摊卖水果", ["09006", "09001"]),
    ("共享电单车把盲道堵死了", ["09011", "09019"]),
    ("工地晚上十二点还在打桩", ["08001"]),
    ("河面上漂着好多塑料瓶", ["06025"]),
    ("马路上有个大坑", ["06013", "91001"]),
    ("垃圾桶满了溢出来了", ["06042"]),
    ("电线杆上贴满了小广告", ["07001"]),
    ("渣土车一路掉泥", ["08011", "06014"]),
    ("这条路的路灯晚上都不亮", ["01037"]),
    ("十字路口红绿灯坏了一直不亮", ["02014"]),
    ("楼下烧烤店油烟太大熏得没法开窗", ["06027"]),
    ("广场舞音响太吵了晚上十点还在跳", ["06028"]),
    ("路边一辆车停了大半年落满灰没人开", ["06034"]),
    ("有人在空地上烧垃圾冒黑烟", ["06020"]),
    ("小区消防通道被私家车堵了", ["09012"]),
    ("好多汽车停在人行道上", ["09009"]),
    ("对面楼顶上搭了个彩钢棚", ["06001"]),
    ("马路中间有只死狗", ["06037"]),
    ("有人在公共车位上装了地锁", ["06040"]),
    ("工地没盖防尘网灰尘满天飞", ["08004"]),
    ("这条马路刚修好又被挖开了", ["08003"]),
    ("小河的水发黑发臭", ["06026"]),
    ("饭店往雨水井里倒泔水", ["06030", "06031"]),
    ("下雪后人行道结冰很滑", ["10001"]),
    ("电线掉下来垂到地上了", ["10002"]),
    ("大风把行道树刮倒了压在路上", ["04002"]),
    ("路中间的护栏被车撞坏了", ["02017"]),
    ("路口的交通指示牌歪了", ["02010"]),
    ("公交站棚的玻璃碎了", ["02004"]),
    ("水果店把货架摆到店门外", ["09005"]),
    ("收废品的把纸箱堆了一路", ["09004"]),
    ("有人在人行道上洗车污水横流", ["09021"]),
    ("阳台上晾的衣服伸到马路上", ["06007"]),
    ("空调外机装得太低还往下滴水", ["06009"]),
    ("绿化带被人挖了种菜", ["06045"]),
    ("人行道的地砖松动翘起来了", ["06013"]),
    ("公厕没水冲不了很臭", ["03001"]),
    ("马路上撒了一地沙子", ["06014"]),
    ("路面突然塌陷出现一个大洞", ["91001"]),
    ("自来水管爆了马路上冒水", ["91003"]),
    ("路边闻到很重的煤气味", ["91004"]),
    ("下大雨后立交桥下积水很深", ["91002"]),
    ("下水道堵了污水冒到路上", ["91005"]),
    ("天桥下面掉水泥块钢筋都露出来了", ["91007"]),
    ("楼顶的广告牌被风吹得摇摇欲坠", ["03006"]),
    ("饭店招牌掉了好几个字", ["03007"]),
    ("地铁口有人发传单", ["07002"]),
    ("围墙上拉了好多横幅", ["07007"]),
    ("人行道的盲道砖坏了好几块", ["06051"]),
    ("小区门口的充电桩坏了充不了电", ["01054"]),
    ("减速带松了过车哐哐响", ["02043"]),
    ("电动车乱停把路口堵了", ["09010"]),
    ("地铁站门口共享单车堆成山", ["09011"]),
    ("工地门口路上全是泥巴车轮印", ["08012"]),
    ("装修垃圾倒在路边没人清", ["06011"]),
    ("树池的盖板不见了差点绊倒", ["04011"]),
    ("绿化带里全是垃圾", ["06017"]),
    ("草坪枯死了一大片", ["04013"]),
    ("路边消防栓漏水", ["01013"]),
    ("河堤塌了一块", ["06023"]),
    ("有人在河边搭棚子占用河道", ["06046", "06001"]),
    ("墙上被人乱涂乱画", ["06004"]),
    ("小区垃圾没分类都混在一起扔", ["06041"]),
    ("路面上全是油污很滑", ["06012"]),
    ("施工的沙子钢筋堆在人行道上", ["08006", "08002"]),
    ("有人在天桥上乞讨", ["09003"]),
    ("有人偷偷把路边的大树砍了", ["06022"]),
    ("水泥罐车漏浆撒了一路", ["06014"]),
    ("化粪池满了往外冒粪水", ["03003"]),
    ("渣土车没盖篷布", ["08011"]),
    ("路牙子被车撞断了", ["06050"]),
    ("楼上用插线板拉电线下来给电瓶车充电", ["06008"]),
    ("树上好多毛毛虫掉下来", ["06021"]),
    ("有人在河里电鱼", ["06024"]),
    ("路边扔了一个破沙发", ["06035"]),
    ("垃圾桶被烧坏了", ["03005"]),
    ("楼下店铺门口大喇叭循环叫卖", ["06028"]),
    ("路边夜宵烧烤摊烟很大", ["06029"]),
    ("工地的围挡被风吹倒了", ["08007"]),
    ("斑马线都磨没了看不清", ["06016"]),
    ("健身器材坏了有螺丝露出来", ["01046"]),
    ("小区门口的路名牌写错了", ["02012"]),
    ("人行道上堆了很多杂物", ["06036"]),
    ("路上有人推三轮车卖水果到处跑", ["09001"]),
    ("店门口搭台搞促销音响很大", ["09022", "06028"]),
    ("马路边地面冒白汽", ["91006"]),
    ("您好，我要反映一下，两条路交叉口东北角那个井盖不知道被谁偷了，已经好几天了，晚上路过的人很容易掉下去", MANHOLE),
    ("市民来电反映：小区北门外人行道上常年有人占道卖菜，早上六点就开始，垃圾扔得到处都是", ["09006", "09001"]),
    ("我们小区后面那条小河最近漂了很多死鱼，味道很大", ["06025", "06026"]),
    ("隔壁工地每天早上五点就开始施工，噪音太大", ["08001"]),
    ("这个路段的马路挖了又填填了又挖，一年挖了三四次", ["08003"]),
    ("路边那个电箱的门一直开着，里面的电线都露在外面，小孩子经过很危险", ["01028"]),
    ("有个路灯杆被车撞歪了随时可能倒", ["01037"]),
    ("公园里的长椅断了", ["04007"]),
    ("下雨天那个路口每次都积水，车都开不过去", ["91002"]),
    ("楼下的下水道一直往上冒臭水", ["91005"]),
    ("门口那棵树的树枝挡住了红绿灯，开车根本看不到", ["04002", "02014"]),
    ("河边的栏杆断了，小孩在那边玩很危险", ["01070"]),
    ("路中间的石墩子被撞倒了", ["02021"]),
    ("马路上好几个坑坑洼洼的地方，电动车骑过去很颠", ["06013"]),
    ("有人把建筑垃圾偷偷倒在绿化带里", ["06011", "06017", "06045"]),
    ("渣土车晚上在路上跑，没盖东西，灰很大", ["08011"]),
    ("路边的垃圾房好几天没有清运，臭气熏天", ["06042"]),
    ("烧烤摊占了半条人行道", ["06029", "09006"]),
    ("对面楼顶上堆满了垃圾和杂物", ["06005"]),
    ("门面上方的雨棚破了要掉下来", ["06043"]),
    ("地上露出一截钢筋头，差点把脚扎了", ["08014"]),
    ("哈罗单车倒了一地", ["09011"]),
    ("红路灯不亮了", ["02014"]),
    ("马葫芦盖子没了", MANHOLE),
    ("沙井盖烂了", MANHOLE),
    ("路边有条死蛇", ["06037"]),
    ("草丛里扔了好几个针头", ["06033"]),
    ("绿化带里的花草被人踩坏了", ["06045"]),
    ("有车长期停在消防通道上", ["09012"]),
    ("有人在河道边钓鱼还下网", ["06024"]),
    # longer, more varied phrasings (written after the data, as a check on generalisation)
    ("小区东门外面那个窨井盖子裂开了，汽车开过去一直响", MANHOLE),
    ("人行道上的检查井盖板丢了，黑洞洞的一个口子", MANHOLE),
    ("学校门口每天下午都有小摊卖炸串", ["09006", "09001"]),
    ("路边堆着一大堆建筑渣土也没有盖", ["06011", "08004"]),
    ("马路上到处都是沥青坑，开车颠死了", ["06013"]),
    ("晚上十一点了楼下ktv还在鬼哭狼嚎", ["06028"]),
    ("人行横道的信号灯一直是红灯不变", ["02014"]),
    ("早上发现街边的树被人锯掉了一棵", ["06022"]),
    ("湖里面好多白色泡沫饭盒漂着", ["06025"]),
    ("新开的奶茶店门口放了个巨大的充气拱门", ["07007"]),
    ("这个垃圾桶已经三天没倒了，苍蝇乱飞", ["06042"]),
    ("有一辆货车把泥沙撒满了整条街", ["06014"]),
    ("道路中间的隔离栏倒了一排", ["02017"]),
    ("地下车库出口的路面塌了一个坑，有一米多深", ["91001"]),
    ("街上的路灯白天也亮着，浪费电", ["01037"]),
    ("餐馆的排烟管道直接对着我家窗户", ["06027"]),
    ("有人在人行道上摆摊修自行车", ["09006", "09005"]),
    ("公交站的站牌被撞倒了", ["02004"]),
    ("楼下的小卖部把冰柜搬到门外卖冷饮", ["09005"]),
    ("路边停的小汽车挡住了消防车道", ["09012"]),
    ("单元门口电瓶车停得乱七八糟", ["09010"]),
    ("美团电单车横七竖八停在路中间", ["09011"]),
    ("路边大树上挂着好多塑料袋", ["06019"]),
    ("绿化带里扔满了快递盒子", ["06017"]),
    ("外面的工地一天到晚尘土飞扬", ["08004"]),
    ("施工的地方没有围起来，路人很容易掉进沟里", ["08007", "08002"]),
    ("泥头车不盖布，一路撒土", ["08011", "06014"]),
    ("大雪过去两天了，人行道上的雪还是没人铲", ["10001"]),
    ("一根网线从电线杆上掉下来挂在半空中", ["10002"]),
    ("河里的水是绿色的还很臭", ["06026"]),
    ("有人在小区空地上养了一群鸡", ["06038"]),
    ("马路边有个旧床垫扔了好几天", ["06035"]),
    ("墙上贴满了办证刻章的广告", ["07001"]),
    ("店铺在二楼窗户外面挂了一个大招牌把窗户都挡住了", ["07006"]),
    ("小区门口的减速带断成了两截", ["02043"]),
    ("那个公共厕所门一直锁着进不去", ["03001"]),
    ("地上的雨水口盖子缺了一块", ["01004", *MANHOLE]),
    ("下了一场暴雨，下穿隧道被淹了", ["91002"]),
    ("地面在冒水，好像是地下的水管破了", ["91003"]),
    ("桥面上的伸缩缝有个大口子，车过去咯噔一下", ["91007"]),
    ("空调外机架子在一楼，走路老是撞到头", ["06009"]),
    ("人行道被挖了一条沟，好几天了也没人填", ["08003"]),
    ("有人往河里倒建筑垃圾", ["06046", "06011"]),
    ("草坪里被人踩出了一条路", ["06045"]),
    ("路灯井盖被人偷走了", ["01006"]),
    # patrol / 采集员 / 12345 work-order style
    ("巡查发现中山路南侧人行道暴露垃圾约2平方米", ["06010"]),
    ("建设路口东侧机动车道雨水箅子缺失1个", ["01004"]),
    ("市民反映某小区西门外污水井盖破损，存在安全隐患，要求尽快修复", ["01002"]),
    ("车巡发现人民路与解放路交叉口西北角机动车违停占用人行道", ["09009"]),
    ("无人机巡查发现某厂房屋顶新建彩钢板房一处约50平方米", ["06001"]),
    ("机巡发现河道水面漂浮垃圾约20平方米", ["06025"]),
    ("市民来电反映某工地夜间施工噪声扰民，要求查处", ["08001"]),
    ("某路段发现渣土运输车辆未密闭，沿途撒漏", ["08011", "06014"]),
    ("采集员上报：某商铺门前占道经营，摆放水果摊位", ["09005", "09006"]),
    ("12345转办：某小区内共享单车大量堆积影响通行", ["09011"]),
    ("巡查发现行道树倒伏压占机动车道", ["04002"]),
    ("发现人行道板破损面积约1平方米", ["06013"]),
    ("某处路面出现塌陷，直径约1米", ["91001"]),
    ("反映某餐饮店油烟直排扰民", ["06027"]),
    ("某处交通护栏倾倒侵占车道", ["02017"]),
    ("某处路灯连续5盏不亮", ["01037"]),
    ("巡查发现某处墙面张贴非法小广告10余张", ["07001"]),
    ("某工地裸土未覆盖，扬尘严重", ["08004"]),
    ("某路段积雪未及时清除，路面结冰", ["10001"]),
    ("某处垃圾桶满溢，周边散落垃圾", ["06042"]),
]


@pytest.mark.parametrize("text, expected", SEARCH_TABLE, ids=[t for t, _ in SEARCH_TABLE])
def test_search_top3(cat, text, expected):
    hits = cat.search(text, k=3, kind="事件")
    got = [h.entry.code for h in hits]
    assert set(got) & set(expected), f"{text!r}: expected one of {expected[:5]}, got {[h.entry.label for h in hits]}"
    assert all(h.entry.kind is Kind.EVENT for h in hits)


def test_search_top1_rate(cat):
    top1 = sum(
        bool(hits) and hits[0].entry.code in expected
        for text, expected in SEARCH_TABLE
        for hits in [cat.search(text, k=1, kind="事件")]
    )
    assert len(SEARCH_TABLE) >= 40
    assert top1 / len(SEARCH_TABLE) >= 0.9, f"top-1 {top1}/{len(SEARCH_TABLE)}"


def test_search_edge_cases(cat):
    assert cat.search("   ") == []
    assert cat.search("井盖没了", k=1, kind="部件")[0].entry.kind is Kind.PART
    hit = cat.search("井盖没了", k=1, kind="事件")[0]
    assert hit.entry.code == "01023" and hit.matched == "井盖没了"
