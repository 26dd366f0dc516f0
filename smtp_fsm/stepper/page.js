/* The stepper page's behaviour (smtp_fsm/stepper): replay, camera, explore mode.
   The protocol is not written here: explore mode reads the table's rows from #fsm-data. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("fsm-data").textContent);
  var items = Array.prototype.slice.call(document.querySelectorAll("#fsm-transcript > li"));
  var figures = {};
  Array.prototype.forEach.call(document.querySelectorAll(".fsm-view"), function (figure) {
    figures[figure.dataset.view] = setUpFigure(figure);
  });
  var states = {};
  data.states.forEach(function (state) { states[state.name] = state; });
  var counter = document.getElementById("fsm-counter");
  var now = document.getElementById("fsm-now");
  var explorer = document.getElementById("fsm-explorer");
  var exploreButton = document.getElementById("fsm-explore");
  var zoomLevels = [0.6, 0.8, 1, 1.25, 1.5, 2];
  var zoom = 2;  // 1: "auto", the scale the camera picks
  var current = -1;
  var shown = null;  // {view, focus: [element ids], active, from, edge}
  var explored = null;  // the state explore mode stands in
  var history = [];

  /* --- the camera ------------------------------------------------------------------ */
  function setUpFigure(figure) {
    var svg = figure.querySelector("svg");
    var box = svg.viewBox.baseVal;
    var graph = svg.querySelector("g.graph");
    var matrix = graph && graph.transform.baseVal.numberOfItems ? graph.transform.baseVal.consolidate().matrix
      : svg.createSVGMatrix();
    var sizes = Array.prototype.map.call(svg.querySelectorAll("text[font-size]"), function (text) {
      return parseFloat(text.getAttribute("font-size"));
    });
    var smallest = (sizes.length ? Math.min.apply(null, sizes) : 14) * Math.abs(matrix.a || 1);
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.style.width = box.width + "px";
    svg.style.height = box.height + "px";
    return {figure: figure, svg: svg, box: {x: box.x, y: box.y, width: box.width, height: box.height},
            matrix: matrix, smallest: smallest, view: figure.dataset.view};
  }
  function element(view, id) {
    return id ? document.getElementById(view + "/" + id) : null;
  }
  function bounds(fig, el) {  // el's box in the SVG's viewBox units
    var b = el.getBBox(), m = fig.matrix;
    var xs = [b.x, b.x + b.width], ys = [b.y, b.y + b.height], px = [], py = [];
    xs.forEach(function (x) { ys.forEach(function (y) { px.push(m.a * x + m.c * y + m.e); py.push(m.b * x + m.d * y + m.f); }); });
    return {x0: Math.min.apply(null, px), y0: Math.min.apply(null, py), x1: Math.max.apply(null, px), y1: Math.max.apply(null, py)};
  }
  function union(boxes) {
    return boxes.reduce(function (u, b) {
      return u ? {x0: Math.min(u.x0, b.x0), y0: Math.min(u.y0, b.y0), x1: Math.max(u.x1, b.x1), y1: Math.max(u.y1, b.y1)} : b;
    }, null);
  }
  function place(start, size, pane, scale, wanted) {  // the translation that centres `wanted`, kept on the drawing
    var drawn = size * scale;
    if (drawn <= pane) { return (pane - drawn) / 2; }
    var t = pane / 2 - (wanted - start) * scale;
    return Math.min(0, Math.max(pane - drawn, t));
  }
  function aim(fig, ids) {
    var W = fig.figure.clientWidth, H = fig.figure.clientHeight, box = fig.box;
    if (!W || !H) { return; }
    var fit = Math.min(W / box.width, H / box.height);
    var legible = data.legible_px * 1.02 / fig.smallest;  // px per SVG unit at which the smallest text is legible
    var scale = Math.max(fit, legible) * zoomLevels[zoom];
    var els = ids.map(function (id) { return element(fig.view, id); }).filter(Boolean);
    var focus = null;
    // the whole step if it fits, else the edge and where it leads, else the state alone
    [els, els.slice(0, 2), els.slice(0, 1)].some(function (group) {
      var u = group.length ? union(group.map(function (el) { return bounds(fig, el); })) : null;
      focus = u;
      return !u || ((u.x1 - u.x0) * scale <= W * 0.9 && (u.y1 - u.y0) * scale <= H * 0.9);
    });
    var cx = focus ? (focus.x0 + focus.x1) / 2 : box.x + box.width / 2;
    var cy = focus ? (focus.y0 + focus.y1) / 2 : box.y + box.height / 2;
    var tx = place(box.x, box.width, W, scale, cx), ty = place(box.y, box.height, H, scale, cy);
    fig.svg.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + scale + ")";
    fig.figure.dataset.scale = String(scale);
    document.getElementById("fsm-zoom-level").textContent = zoom === 2 ? "auto" : Math.round(zoomLevels[zoom] * 100) + "%";
  }
  function clear(cls) {
    Array.prototype.forEach.call(document.querySelectorAll("." + cls), function (el) { el.classList.remove(cls); });
  }
  function light(view, edge, from, active) {
    clear("fsm-active"); clear("fsm-from"); clear("fsm-taken"); clear("fsm-choice");
    Object.keys(figures).forEach(function (name) { figures[name].figure.hidden = name !== view; });
    var fig = figures[view];
    var activeEl = element(view, active), edgeEl = element(view, edge), fromEl = from !== active ? element(view, from) : null;
    if (activeEl) { activeEl.classList.add("fsm-active"); }
    if (edgeEl) { edgeEl.classList.add("fsm-taken"); }
    if (fromEl) { fromEl.classList.add("fsm-from"); }
    shown = {view: view, ids: [active, edge, from]};
    document.body.dataset.view = view;
    aim(fig, shown.ids);
    return Boolean(edgeEl);
  }
  function setZoom(level) {
    zoom = Math.max(0, Math.min(zoomLevels.length - 1, level));
    if (shown) { aim(figures[shown.view], shown.ids); }
  }

  /* --- replay ---------------------------------------------------------------------- */
  function show(index) {
    if (items.length === 0) { counter.textContent = "no steps"; light(data.views[0], "", "", data.initial); return; }
    index = Math.max(0, Math.min(items.length - 1, index));
    if (current >= 0) { items[current].classList.remove("fsm-current"); }
    current = index;
    var item = items[index], d = item.dataset;
    item.classList.add("fsm-current");
    var drawn = light(d.view, d.edge, d.before, d.after);
    document.body.dataset.state = d.after;
    document.body.dataset.step = String(index + 1);
    counter.textContent = "step " + (index + 1) + " of " + items.length;
    now.textContent = d.explain + (d.undrawn || (d.edge && !drawn) ? " (not drawn on this view)" : "");
    document.getElementById("fsm-prev").disabled = index === 0;
    document.getElementById("fsm-next").disabled = index === items.length - 1;
    item.scrollIntoView({block: "nearest"});
  }

  /* --- explore mode: the table's rows leaving a state --------------------------------- */
  function rowsFrom(state) {
    return data.rows.filter(function (row) { return row.source === state; });
  }
  function viewOf(state) {
    if (data.views.length === 1) { return data.views[0]; }
    return states[state] ? states[state].page : data.views[0];
  }
  function edgeIn(view, row) {  // the row's own edge, or its session-wide rule's edge from "any state"
    var own = row.source + "--" + row.trigger + "--" + row.dest;
    if (element(view, own)) { return own; }
    var rule = "__any__--" + row.trigger + "--" + row.dest;
    return element(view, rule) ? rule : "";
  }
  function text(tag, content, cls) {
    var el = document.createElement(tag);
    el.textContent = content;
    if (cls) { el.className = cls; }
    return el;
  }
  function rowItem(row) {
    var li = document.createElement("li");
    var button = text("button", row.words + "  →  " + row.dest);
    button.type = "button";
    button.dataset.row = String(row.index);
    button.addEventListener("click", function () { take(row); });
    li.appendChild(button);
    var conditions = row.conditions.map(function (c) { return c.name + " (" + c.words.replace(/\.$/, "") + ")"; });
    var when = row.trigger in data.rules ? "the session's rule: " + data.rules[row.trigger]
      : conditions.length ? "if " + conditions.join(" and ") : "otherwise: when no row before it was taken";
    li.appendChild(text("div", "row " + row.index + " · " + row.trigger + (row.label ? " · " + row.label : "") +
      " · " + when, "if"));
    if (row.recorded) { li.classList.add("noted"); }
    return li;
  }
  function stand(state, row) {
    explored = state;
    document.body.dataset.state = state;
    var spec = states[state];
    explorer.textContent = "";
    document.getElementById("fsm-side").scrollTop = 0;
    explorer.appendChild(text("h2", "Explore: in " + state));
    explorer.appendChild(text("p", spec ? spec.description + " (" + spec.rfc + ")" : ""));
    var rows = rowsFrom(state);
    var own = rows.filter(function (r) { return !(r.trigger in data.rules); });
    var rules = rows.filter(function (r) { return r.trigger in data.rules; });
    if (own.length) {
      explorer.appendChild(text("p", "What the server can answer (or the caller do) here, in the table's order: " +
        "the first row whose conditions hold is taken."));
      var list = document.createElement("ol");
      list.id = "fsm-explore-rows";
      own.forEach(function (r) { list.appendChild(rowItem(r)); });
      explorer.appendChild(list);
    } else {
      explorer.appendChild(text("p", "No row leaves " + state + ": the session is over."));
    }
    if (rules.length) {
      explorer.appendChild(text("h2", "In this state, as in every live one"));
      var ruleList = document.createElement("ol");
      ruleList.id = "fsm-explore-rules";
      rules.forEach(function (r) { ruleList.appendChild(rowItem(r)); });
      explorer.appendChild(ruleList);
    }
    var back = text("button", "◀ back");
    back.type = "button";
    back.id = "fsm-explore-back";
    back.disabled = history.length === 0;
    back.addEventListener("click", function () { var last = history.pop(); if (last) { stand(last.state, last.row); } });
    explorer.appendChild(back);
    var view = viewOf(row ? row.source : state);
    var edge = row ? edgeIn(view, row) : "";
    light(view, edge, row ? row.source : state, state);
    rows.forEach(function (r) { var el = element(view, edgeIn(view, r)); if (el && r !== row) { el.classList.add("fsm-choice"); } });
    var notes = "";
    if (row && !edge) { notes += " (not drawn on this view)"; }
    if (view !== viewOf(state)) { notes += " Its rows are drawn on the " + viewOf(state) + " page: pick one to go on."; }
    now.textContent = (row
      ? "Explore: row " + row.index + ", " + row.words + ": " + row.source + " → " + row.dest + ". Now in " + state + "."
      : "Explore: standing in " + state + ". Pick a row (or click another state).") + notes;
  }
  function take(row) {
    history.push({state: explored, row: null});
    stand(row.dest, row);
  }
  function setMode(explore) {
    document.body.dataset.mode = explore ? "explore" : "replay";
    exploreButton.setAttribute("aria-pressed", explore ? "true" : "false");
    explorer.hidden = !explore;
    if (explore) {
      history = [];
      stand(current >= 0 ? items[current].dataset.after : data.initial, null);
    } else {
      explored = null;
      show(Math.max(0, current));
    }
  }
  Object.keys(figures).forEach(function (name) {
    figures[name].svg.addEventListener("click", function (event) {
      if (document.body.dataset.mode !== "explore") { return; }
      var node = event.target.closest("g.node");
      var state = node ? node.id.slice(name.length + 1) : "";
      if (states[state]) { history.push({state: explored, row: null}); stand(state, null); }
    });
  });

  /* --- controls ------------------------------------------------------------------ */
  document.getElementById("fsm-prev").addEventListener("click", function () { show(current - 1); });
  document.getElementById("fsm-next").addEventListener("click", function () { show(current + 1); });
  document.getElementById("fsm-zoom-out").addEventListener("click", function () { setZoom(zoom - 1); });
  document.getElementById("fsm-zoom-in").addEventListener("click", function () { setZoom(zoom + 1); });
  exploreButton.addEventListener("click", function () { setMode(document.body.dataset.mode !== "explore"); });
  items.forEach(function (item, index) {
    item.addEventListener("click", function (event) {
      if (!event.target.closest("details")) { show(index); }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.target.tagName === "SUMMARY") { return; }
    var keys = {ArrowRight: 1, PageDown: 1, " ": 1, ArrowLeft: -1, PageUp: -1};
    var replaying = document.body.dataset.mode !== "explore";
    if (replaying && event.key in keys) { show(current + keys[event.key]); }
    else if (replaying && event.key === "Home") { show(0); }
    else if (replaying && event.key === "End") { show(items.length - 1); }
    else if (event.key === "+" || event.key === "=") { setZoom(zoom + 1); }
    else if (event.key === "-") { setZoom(zoom - 1); }
    else if (event.key === "e") { setMode(replaying); }
    else { return; }
    event.preventDefault();
  });
  window.addEventListener("resize", function () { if (shown) { aim(figures[shown.view], shown.ids); } });
  // a handout has the whole content of each step: open what is folded while printing, then fold it back
  var opened = [];
  window.addEventListener("beforeprint", function () {
    opened = Array.prototype.filter.call(document.querySelectorAll("#fsm-transcript details"), function (d) { return !d.open; });
    opened.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () { opened.forEach(function (d) { d.open = false; }); opened = []; });
  show(0);
}());
