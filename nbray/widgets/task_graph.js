// nbray TaskGraph view (anywidget): shows the SVG the kernel renders, with
// wheel zoom, drag to pan, and click on a node to see its details.
function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.className = "nbray-task-graph-view";
  const canvas = document.createElement("div");
  canvas.className = "nbray-task-graph-canvas";
  const info = document.createElement("div");
  info.className = "nbray-task-graph-info";
  wrap.append(canvas, info);
  el.append(wrap);
  let view = null;

  function draw() {
    canvas.innerHTML = model.get("svg");
    const svg = canvas.querySelector("svg");
    if (!svg) return;
    if (view) svg.setAttribute("viewBox", view.join(" "));
    svg.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = (view || svg.getAttribute("viewBox").split(" ").map(Number)).slice();
      const rect = svg.getBoundingClientRect();
      const fx = (event.clientX - rect.left) / rect.width;
      const fy = (event.clientY - rect.top) / rect.height;
      const scale = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const w = box[2] * scale, h = box[3] * scale;
      view = [box[0] + (box[2] - w) * fx, box[1] + (box[3] - h) * fy, w, h];
      svg.setAttribute("viewBox", view.join(" "));
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, box: (view || svg.getAttribute("viewBox").split(" ").map(Number)).slice() };
    });
    svg.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const rect = svg.getBoundingClientRect();
      const dx = (event.clientX - drag.x) * drag.box[2] / rect.width;
      const dy = (event.clientY - drag.y) * drag.box[3] / rect.height;
      view = [drag.box[0] - dx, drag.box[1] - dy, drag.box[2], drag.box[3]];
      svg.setAttribute("viewBox", view.join(" "));
    });
    svg.addEventListener("pointerup", () => { drag = null; });
    svg.addEventListener("dblclick", () => { view = null; draw(); });
    svg.querySelectorAll("[data-id]").forEach((node) => {
      node.style.cursor = "pointer";
      node.addEventListener("click", () => {
        model.set("selected", node.getAttribute("data-id"));
        model.save_changes();
      });
    });
  }

  function showInfo() {
    info.innerHTML = model.get("details");
  }

  model.on("change:svg", draw);
  model.on("change:details", showInfo);
  draw();
  showInfo();
}

export default { render };
