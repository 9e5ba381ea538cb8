"""Observations: what the vision pipeline hands to the rest of the system.

An :class:`Observation` is ONE physical issue seen in patrol footage (however
many frames it appeared in): its class and catalogue code, where it is (with an
error radius in metres), when it was seen, and its evidence. A
:class:`BatchFile` is the state of one file of an ingest batch, so a batch can
be resumed and re-run without duplicates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from city.catalogue import Kind, Source

FileStatus = Literal["done", "failed"]


class Observation(BaseModel):
    """One physical issue seen in footage, geolocated and deduplicated."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="stable id: <batch>:<file sha256[:12]>:<n>")
    batch_id: str
    file: str = Field(description="path of the footage file inside the batch")
    file_sha256: str
    source: Source
    platform_id: str | None = None
    class_name: str = Field(description="the detector's class name")
    label_zh: str = ""
    kind: Kind | None = Field(default=None, description="catalogue kind; None for classes that are not issues")
    code: str | None = None
    confidence: float = Field(ge=0, le=1, description="best detection confidence")
    mean_confidence: float = Field(ge=0, le=1)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    error_m: float = Field(ge=0, description="radius (metres) the true position lies within, roughly 2σ")
    frames: int = Field(ge=1, description="sampled frames the issue was detected in")
    first_t: float = Field(description="media seconds of the first sighting")
    last_t: float
    best_t: float = Field(description="media seconds of the evidence frame")
    seen_at: datetime | None = Field(default=None, description="UTC time of the evidence frame when the footage has absolute time")
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in the evidence frame (pixels)")
    frame_uri: str | None = Field(default=None, description="evidence frame with the box drawn, people blurred")
    crop_uri: str | None = None
    model: str = Field(description="detector name@version")
    case_number: str | None = Field(default=None, description="the case this observation opened or joined")

    def feature(self) -> dict:
        """This observation as a GeoJSON Feature (coordinates in lon, lat order)."""
        props = self.model_dump(mode="json", exclude={"lat", "lon"})
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]}, "properties": props}


class View(BaseModel):
    """One sampled frame that went through the detector: where the camera was and
    how it pointed. With the file's camera and mount (``BatchFile.stats["view"]``)
    this says which places were in view, so 核查 can tell "not there any more"
    from "not looked at"."""

    model_config = ConfigDict(frozen=True)

    t: float = Field(description="media seconds")
    utc: datetime | None = Field(default=None, description="UTC time of the frame when the footage has absolute time")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    heading: float | None = Field(default=None, description="platform heading, degrees from north")
    yaw: float | None = Field(default=None, description="gimbal yaw (drones)")
    alt: float | None = Field(default=None, description="height above ground, metres (drones)")
    pitch: float | None = Field(default=None, description="gimbal pitch (drones)")


class BatchFile(BaseModel):
    """What happened to one file of a batch."""

    batch_id: str
    path: str
    sha256: str
    status: FileStatus
    error: str | None = None
    observations: int = 0
    stats: dict = Field(default_factory=dict, description="frames read/sampled/detected, seconds, notes")
    finished_at: datetime


class Batch(BaseModel):
    """An ingest batch: a folder (or archive) of footage with its manifest."""

    id: str
    source: Source
    platform_id: str | None = None
    root: str = Field(description="the folder the footage was read from (never modified)")
    manifest: dict = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


def feature_collection(observations: list[Observation]) -> dict:
    """GeoJSON FeatureCollection of observations."""
    return {"type": "FeatureCollection", "features": [o.feature() for o in observations]}
