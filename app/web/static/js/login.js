// The login form: POST /api/auth/login (sets the session cookie), then go to `next`.
import { api } from "./api.js";

const form = document.getElementById("login-form");
const err = document.getElementById("login-error");
const submit = document.getElementById("login-submit");

function safeNext(target) {
  if (!target || !target.startsWith("/") || target.startsWith("//") || target.includes("\\")) return "/";
  return target;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  err.hidden = true;
  const name = form.elements.name.value.trim();
  const password = form.elements.password.value;
  if (!name || !password) {
    err.textContent = "请输入用户名和密码";
    err.hidden = false;
    return;
  }
  submit.disabled = true;
  submit.textContent = "登录中…";
  try {
    await api("/api/auth/login", { json: { name, password }, noRedirect: true });
    location.assign(safeNext(form.dataset.next));
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
    submit.disabled = false;
    submit.textContent = "登录";
  }
});
