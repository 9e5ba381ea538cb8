"""How ``jurisdiction.geojson`` (the SAMPLE jurisdiction of 重庆市) was made.

Run ``python city/data/sample/make_jurisdiction.py`` to regenerate it; nothing
imports or runs this at run time.

示例数据：边界为简化示意，不是官方行政区划边界。Two districts of 重庆市,
江北区 (500105) and 渝中区 (500103), with a few of their real streets drawn
as simplified polygons at roughly their real places (WGS-84): the 嘉陵江
roughly separates them, the 长江 bounds 渝中区 to the south. Only these
streets are drawn, so each street here is larger than the real one, and a
district's polygon is the union of its sample streets. The 9-digit street codes are
plausible but made up (sample codes, not the official 统计用区划代码).

Unit grids (单元网格) are a regular ~390 × 400 m grid clipped to each street;
pieces smaller than 10% of a cell are merged into the neighbouring grid they
share the longest border with, so the grids tile their street without gaps.
Grid ids follow GB/T 30428.1: street code (9) + community (3) + sequence (2).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import shapely
from shapely.geometry import Polygon, box, mapping

HERE = Path(__file__).parent
OUT = HERE / "jurisdiction.geojson"

NOTE = "示例数据：边界为简化示意，不是官方行政区划边界 (sample data, simplified boundaries, not official)"

# Shared vertices (lon, lat), so that neighbouring streets share their borders exactly.
V = {
    # 嘉陵江, the 江北区 / 渝中区 border, west to east, then the confluence with the 长江
    "J0": (106.500, 29.5760),
    "J1": (106.520, 29.5680),
    "J2": (106.540, 29.5665),
    "J3": (106.555, 29.5675),
    "J4": (106.565, 29.5685),
    "J5": (106.580, 29.5690),
    "C": (106.590, 29.5690),  # 江北嘴, 江北区 side of the confluence
    "T": (106.592, 29.5655),  # 朝天门, the tip of the 渝中 peninsula
    # 长江 north bank of 渝中区, west to east
    "Y0": (106.540, 29.5460),
    "Y1": (106.552, 29.5450),
    "Y2": (106.565, 29.5480),
    "Y3": (106.580, 29.5540),
    "Y4": (106.587, 29.5590),
    # inside 渝中区: the line between the 嘉陵江 side and the 长江 side
    "M0": (106.540, 29.5570),
    "M1": (106.555, 29.5570),
    "M2": (106.565, 29.5590),
    # inside 江北区
    "R0": (106.500, 29.5880),
    "R1": (106.520, 29.5880),
    "R2": (106.540, 29.5880),
    "R3": (106.565, 29.5880),
    "Q": (106.565, 29.5800),
    "E1": (106.598, 29.5800),  # 长江 bank north-east of 江北嘴
    "E2": (106.602, 29.6050),
    "N0": (106.500, 29.6050),
    "N2": (106.565, 29.6050),
}

CITY = {"id": "500000", "name": "重庆市"}
DISTRICTS = [
    ("500105", "江北区", [
        ("500105001", "观音桥街道", ["J1", "J2", "R2", "R1"]),
        ("500105002", "华新街街道", ["J2", "J3", "J4", "Q", "R3", "R2"]),
        ("500105003", "五里店街道", ["Q", "E1", "E2", "N2", "R3"]),
        ("500105004", "江北城街道", ["J4", "J5", "C", "E1", "Q"]),
        ("500105005", "石马河街道", ["R0", "R1", "R2", "R3", "N2", "N0"]),
        ("500105006", "大石坝街道", ["J0", "J1", "R1", "R0"]),
    ]),
    ("500103", "渝中区", [
        ("500103001", "解放碑街道", ["M2", "J4", "J5", "Y3", "Y2"]),
        ("500103002", "朝天门街道", ["J5", "T", "Y4", "Y3"]),
        ("500103003", "上清寺街道", ["J2", "J3", "M1", "M0"]),
        ("500103004", "两路口街道", ["M0", "M1", "M2", "Y2", "Y1", "Y0"]),
        ("500103005", "大溪沟街道", ["J3", "J4", "M2", "M1"]),
    ]),
]

GRID_LON = 0.004  # ≈ 387 m at 29.57°N
GRID_LAT = 0.0036  # ≈ 400 m
SLIVER = 0.10  # pieces under 10% of a cell are merged into a neighbour


def rounded(geom, nd: int = 6):
    """The geometry with coordinates rounded to ``nd`` decimals (checked valid)."""
    out = shapely.set_precision(geom, 10**-nd)
    out = shapely.transform(out, lambda xy: xy.round(nd))
    assert out.is_valid, shapely.is_valid_reason(out)
    return out


def grids_of(street: Polygon) -> list[Polygon]:
    """Clip the regular grid to the street; merge slivers; order north-west first."""
    minx, miny, maxx, maxy = street.bounds
    cell_area = GRID_LON * GRID_LAT
    pieces = []  # (row from north, col, polygon)
    for i in range(math.floor(miny / GRID_LAT), math.ceil(maxy / GRID_LAT)):
        for j in range(math.floor(minx / GRID_LON), math.ceil(maxx / GRID_LON)):
            cell = box(j * GRID_LON, i * GRID_LAT, (j + 1) * GRID_LON, (i + 1) * GRID_LAT)
            part = street.intersection(cell)
            for p in getattr(part, "geoms", [part]):
                if isinstance(p, Polygon) and p.area > 0:
                    pieces.append([-i, j, p])
    big = [x for x in pieces if x[2].area >= SLIVER * cell_area]
    for small in sorted((x for x in pieces if x[2].area < SLIVER * cell_area), key=lambda x: -x[2].area):
        host = max(big, key=lambda b: b[2].intersection(small[2]).length)
        if host[2].intersection(small[2]).length == 0:
            big.append(small)  # an isolated sliver stays its own grid
        else:
            host[2] = shapely.union(host[2], small[2]).normalize()
    return [shapely.simplify(p, 0) for _, _, p in sorted(big, key=lambda x: (x[0], x[1]))]


def feature(level: str, id_: str, name: str, parent: str | None, geom) -> dict:
    props = {"level": level, "id": id_, "name": name, "parent": parent, "sample": True}
    return {"type": "Feature", "id": id_, "properties": props, "geometry": mapping(geom)}


def main() -> None:
    features, streets_all = [], []
    for did, dname, streets in DISTRICTS:
        polys = [(sid, sname, Polygon([V[k] for k in ring])) for sid, sname, ring in streets]
        for sid, sname, p in polys:
            assert p.is_valid and 4 <= len(p.exterior.coords) - 1 <= 8, sid
        streets_all += polys
        features.append(feature("district", did, dname, None, rounded(shapely.union_all([p for *_, p in polys]))))
        for sid, sname, p in polys:
            features.append(feature("street", sid, sname, did, p))
            for n, g in enumerate(grids_of(p)):
                community, seq = divmod(n, 99)
                gid = f"{sid}{community + 1:03d}{seq + 1:02d}"
                features.append(feature("grid", gid, f"{sname}{community + 1:03d}社区第{seq + 1:02d}网格", sid, rounded(g)))
    for a in range(len(streets_all)):  # no two streets overlap
        for b in range(a + 1, len(streets_all)):
            overlap = streets_all[a][2].intersection(streets_all[b][2]).area
            assert overlap < 1e-12, (streets_all[a][0], streets_all[b][0], overlap)
    collection = {
        "type": "FeatureCollection",
        "name": "重庆市 jurisdiction (sample)",
        "sample": True,
        "note": NOTE,
        "city": CITY,
        "generator": "city/data/sample/make_jurisdiction.py",
        "features": features,
    }
    text = json.dumps(collection, ensure_ascii=False, separators=(",", ":"))
    text = text.replace(',{"type":"Feature"', ',\n{"type":"Feature"')  # one feature a line
    OUT.write_text(text + "\n", encoding="utf-8")
    counts = {lv: sum(f["properties"]["level"] == lv for f in features) for lv in ("district", "street", "grid")}
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): {counts}")


if __name__ == "__main__":
    main()
