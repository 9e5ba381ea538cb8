// The top nav: who is signed in (GET /api/auth/me) and 退出 (POST /api/auth/logout).
import { api, toast } from "./api.js";

const ROLE_NAMES = { admin: "管理员", dispatcher: "调度员", department: "责任单位", viewer: "只读用户" };

async function refreshMe() {
  try {
    const me = await api("/api/auth/me");
    const name = document.getElementById("nav-user");
    const role = document.getElementById("nav-role");
    if (name) name.textContent = me.name;
    if (role) role.textContent = (ROLE_NAMES[me.role] || me.role) + (me.department_id ? ` · ${me.department_id}` : "");
  } catch {
    /* api() already sent an expired session to the login page */
  }
}

document.getElementById("logout")?.addEventListener("click", async () => {
  try {
    await api("/api/auth/logout", { method: "POST", noRedirect: true });
  } catch (e) {
    toast(e.message, "error");
  }
  location.assign("/login");
});

refreshMe();
