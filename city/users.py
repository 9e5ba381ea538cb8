"""Users and their roles; the permission checks the chat tools and the HTTP API apply.

* ``dispatcher`` (调度员) and ``admin`` (管理员): read everything, do everything.
* ``department`` (责任单位): sees and acts only on cases its department currently
  holds (status 派遣/处置中 with its ``department_id``), and only the department's
  own lifecycle actions: 签收, 处置完成 (with a note), 退回 (with a reason).
  延期 needs an approver, so a department asks a dispatcher for it.
* ``viewer`` (只读): reads everything, changes nothing.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from city.bundle import CityData
from city.cases import Case
from city.errors import XunjianError
from city.lifecycle import Action


class PermissionDenied(XunjianError):
    """The user's role or department does not allow this (a clear Chinese message)."""


class Role(StrEnum):
    DISPATCHER = "dispatcher"
    DEPARTMENT = "department"
    VIEWER = "viewer"
    ADMIN = "admin"


ROLE_NAMES = {Role.DISPATCHER: "调度员", Role.DEPARTMENT: "责任单位", Role.VIEWER: "只读用户", Role.ADMIN: "管理员"}

#: The lifecycle actions a department user may take on its own cases.
DEPARTMENT_ACTIONS = frozenset({Action.ACCEPT, Action.COMPLETE, Action.RETURN})


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=64, description="姓名（写入审计日志的操作人）")
    role: Role
    department_id: str | None = Field(default=None, description="责任单位用户所属单位编号")

    @model_validator(mode="after")
    def _department(self):
        if not self.name.strip():
            raise ValueError("a user needs a name (it is the actor in the audit log)")
        if self.role is Role.DEPARTMENT and not self.department_id:
            raise ValueError("a department user needs a department_id")
        return self

    @property
    def label(self) -> str:
        dept = f"，{self.department_id}" if self.department_id else ""
        return f"{self.name}（{ROLE_NAMES[self.role]}{dept}）"

    @property
    def manages(self) -> bool:
        """Dispatcher or admin: may read and change any case."""
        return self.role in (Role.DISPATCHER, Role.ADMIN)

    def check(self, city: CityData) -> User:
        """Refuse a department user whose department does not exist."""
        if self.department_id:
            city.departments.get(self.department_id)
        return self

    # -- the checks the tools apply ----------------------------------------------------

    def can_see(self, case: Case) -> bool:
        if self.role is Role.DEPARTMENT:
            return case.department_id == self.department_id
        return True

    def require_see(self, case: Case) -> None:
        if not self.can_see(case):
            raise PermissionDenied(f"{self.label} 只能查看本单位当前承办的案件；案件 {case.number} 不在本单位名下")

    def require_manage(self, what: str) -> None:
        """Dispatcher/admin only (改派、升级、延期、合并、作废、审核)."""
        if not self.manages:
            raise PermissionDenied(f"{self.label} 无权{what}：只有调度员或管理员可以执行")

    def require_department_action(self, case: Case, action: Action) -> None:
        """签收/处置完成/退回: the department holding the case, or a dispatcher/admin on its behalf."""
        if self.role is Role.VIEWER:
            raise PermissionDenied(f"{self.label} 是只读用户，不能执行「{action.value}」")
        if action not in DEPARTMENT_ACTIONS:
            raise PermissionDenied(f"「{action.value}」不是责任单位操作；责任单位只能签收、处置完成、退回")
        if self.role is Role.DEPARTMENT:
            self.require_see(case)
