// 批次报告: GET /api/batches/{id}.
import { api, h, clear, pageData } from "./api.js";
import { renderReport } from "./report.js";

const { batch_id: batchId } = pageData();
const box = document.getElementById("report");

api(`/api/batches/${encodeURIComponent(batchId)}`)
  .then((res) => renderReport(box, res.result || res.report || res))
  .catch((e) => clear(box).append(h("p.form-error", { role: "alert" }, e.message)));
