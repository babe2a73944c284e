/* moebench results site: the glue between the pages' JSON figure specs and plotly.js,
   sortable and filterable tables, and the compare view. No framework, no network. */
(function () {
  "use strict";

  function rgba(hex, alpha) {
    var h = hex.replace("#", "");
    var n = parseInt(h.length === 3 ? h.replace(/(.)/g, "$1$1") : h, 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function seriesTraces(s, axis, useXt, legendSeen) {
    var x = useXt && s.xt ? s.xt : s.x;
    var suffix = axis ? { xaxis: "x" + axis, yaxis: "y" + axis } : {};
    var traces = [];
    var shape = s.step ? "hv" : "linear";
    if (s.lo && s.hi) {
      traces.push(Object.assign({ x: x, y: s.hi, mode: "lines", line: { width: 0, shape: shape },
        hoverinfo: "skip", showlegend: false, legendgroup: s.name }, suffix));
      traces.push(Object.assign({ x: x, y: s.lo, mode: "lines", line: { width: 0, shape: shape },
        fill: "tonexty", fillcolor: rgba(s.color, 0.2), hoverinfo: "skip", showlegend: false,
        legendgroup: s.name }, suffix));
    }
    var group = s.name;
    var first = !legendSeen[group];
    legendSeen[group] = true;
    var t = Object.assign({ x: x, y: s.y, name: s.name, mode: s.mode || "lines",
      legendgroup: group, showlegend: first,
      line: { color: s.color, width: s.thin ? 1 : 2, shape: shape, dash: s.dash ? "dash" : "solid" },
      marker: { color: s.colors || s.color, size: s.links ? 9 : (s.thin ? 3 : 6) } }, suffix);
    if (s.rep) { t.text = s.rep.map(function (r) { return r === null ? "" : s.name + ", repetition " + r; }); }
    if (s.text) { t.text = s.text; }
    if (t.text) { t.hovertemplate = "%{text}<br>x=%{x}<br>y=%{y}<extra></extra>"; }
    if (s.links) { t.customdata = s.links; }
    if (s.ex) { t.error_x = { type: "data", symmetric: false, arrayminus: s.ex[0], array: s.ex[1], color: "#bbbbbb", thickness: 0.8, width: 0 }; }
    if (s.ey) { t.error_y = { type: "data", symmetric: false, arrayminus: s.ey[0], array: s.ey[1], color: "#bbbbbb", thickness: 0.8, width: 0 }; }
    traces.push(t);
    return traces;
  }

  function axisLayout(spec, title, isX) {
    var a = { title: { text: title }, zeroline: false, automargin: true };
    if ((isX && spec.xlog) || (!isX && spec.ylog)) { a.type = "log"; }
    if (isX && spec.category) { a.type = "category"; }
    if (spec.range) { a.range = spec.range; }
    return a;
  }

  function countPoints(traces) {
    var n = 0;
    traces.forEach(function (t) {
      if (t.hoverinfo === "skip") { return; }
      (t.y || []).forEach(function (v) { if (v !== null && isFinite(v)) { n += 1; } });
    });
    return n;
  }

  function render(div, spec, panels, useXt) {
    var legendSeen = {};
    var traces = [];
    var n = panels.length;
    var cols = Math.min(n, spec.columns || 3), rows = Math.ceil(n / cols);
    var height = n > 1 ? 120 + 330 * rows : 430;
    var layout = { margin: { t: 40, r: 10, b: 50, l: 60 }, hovermode: "closest",
      legend: { orientation: "h", y: -0.1 - 60 / height }, height: height, shapes: [], annotations: [] };
    panels.forEach(function (p, i) {
      var axis = i > 0 ? String(i + 1) : "";
      var r = Math.floor(i / cols), c = i % cols;
      p.series.forEach(function (s) { traces = traces.concat(seriesTraces(s, axis, useXt, legendSeen)); });
      var xa = axisLayout(spec, useXt ? spec.xt : spec.x, true);
      var ya = axisLayout(spec, spec.y, false);
      if (n > 1) {
        var gx = 0.06, gy = 0.5 / rows;
        xa.domain = [c / cols + (c ? gx / 2 : 0), (c + 1) / cols - (c < cols - 1 ? gx / 2 : 0)];
        ya.domain = [1 - (r + 1) / rows + (r < rows - 1 ? gy / 2 : 0), 1 - r / rows - (r ? gy / 2 : 0) - 0.04];
        xa.anchor = "y" + axis; ya.anchor = "x" + axis;
        if (spec.shared && i > 0) { xa.matches = "x"; ya.matches = "y"; }
        layout.annotations.push({ text: p.title, showarrow: false, xref: "paper", yref: "paper",
          x: (xa.domain[0] + xa.domain[1]) / 2, y: ya.domain[1] + 0.01, xanchor: "center",
          yanchor: "bottom", font: { size: 12 } });
      }
      layout["xaxis" + axis] = xa;
      layout["yaxis" + axis] = ya;
      if (spec.region) {
        layout.shapes.push({ type: "rect", xref: "x" + axis, yref: "y" + axis, x0: spec.region[0],
          x1: spec.region[1], y0: spec.region[2], y1: spec.region[3], fillcolor: "rgba(214,39,40,0.08)",
          line: { width: 0 }, layer: "below" });
      }
    });
    layout.title = { text: n === 1 && panels[0].title ? panels[0].title : "", font: { size: 13 } };
    Plotly.newPlot(div, traces, layout, { responsive: true, displaylogo: false });
    div.setAttribute("data-points", String(countPoints(traces)));
    if (!div.dataset.clickBound) {
      div.dataset.clickBound = "1";
      div.on("plotly_click", function (ev) {
        var pt = ev.points && ev.points[0];
        if (pt && pt.customdata) { window.location.href = pt.customdata; }
      });
    }
  }

  function drawFigure(div) {
    var spec = JSON.parse(document.getElementById(div.getAttribute("data-spec")).textContent);
    var controls = document.createElement("div");
    controls.className = "controls";
    var head = document.createElement("p");
    head.className = "figtitle";
    head.textContent = spec.title;
    div.parentNode.insertBefore(head, div);
    div.parentNode.insertBefore(controls, div);
    var state = { panel: 0, xt: false };
    function redraw() { render(div, spec, spec.together ? spec.panels : [spec.panels[state.panel]], state.xt); }
    if (spec.panels.length > 1 && !spec.together) {
      var sel = document.createElement("select");
      sel.className = "panel-select";
      spec.panels.forEach(function (p, i) {
        var o = document.createElement("option");
        o.value = String(i); o.textContent = p.title; sel.appendChild(o);
      });
      sel.addEventListener("change", function () { state.panel = Number(sel.value); redraw(); });
      controls.appendChild(document.createTextNode("panel "));
      controls.appendChild(sel);
    }
    if (spec.xt) {
      var xs = document.createElement("select");
      xs.className = "x-select";
      [[spec.x, "0"], [spec.xt, "1"]].forEach(function (pair) {
        var o = document.createElement("option");
        o.value = pair[1]; o.textContent = pair[0]; xs.appendChild(o);
      });
      xs.addEventListener("change", function () { state.xt = xs.value === "1"; redraw(); });
      controls.appendChild(document.createTextNode(" x axis "));
      controls.appendChild(xs);
    }
    redraw();
  }

  function cellValue(td) {
    var t = td.textContent.trim();
    var m = t.match(/^-?[0-9.]+(e[-+]?[0-9]+)?/i);
    return m ? { num: parseFloat(m[0]), text: t } : { num: null, text: t };
  }

  function makeSortable(tbl) {
    var heads = tbl.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.classList.add("sort");
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var body = tbl.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        heads.forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col] || a.cells[0]), y = cellValue(b.cells[col] || b.cells[0]);
          if (x.num !== null && y.num !== null) { return dir * (x.num - y.num); }
          return dir * x.text.localeCompare(y.text);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function makeFilterable(tbl) {
    var box = document.createElement("input");
    box.type = "search";
    box.className = "table-filter";
    box.placeholder = "filter rows (all words must match)";
    var count = document.createElement("span");
    count.className = "row-count";
    var wrap = document.createElement("div");
    wrap.className = "filter";
    wrap.appendChild(box); wrap.appendChild(count);
    tbl.parentNode.insertBefore(wrap, tbl);
    var rows = tbl.tBodies[0] ? tbl.tBodies[0].rows : [];
    function apply() {
      var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      Array.prototype.forEach.call(rows, function (r) {
        var t = r.textContent.toLowerCase();
        var ok = words.every(function (w) { return t.indexOf(w) >= 0; });
        r.style.display = ok ? "" : "none";
        shown += ok ? 1 : 0;
      });
      count.textContent = shown + " of " + rows.length + " rows";
    }
    box.addEventListener("input", apply);
    apply();
  }

  function enhanceTables(root) {
    root.querySelectorAll("table.sortable").forEach(makeSortable);
    root.querySelectorAll("table.filterable").forEach(makeFilterable);
  }

  /* ---------------------------------------------------------------- compare view */
  function wilson(k, n) {
    if (!n) { return [NaN, NaN]; }
    var z = 1.96, p = k / n, d = 1 + z * z / n;
    var c = (p + z * z / (2 * n)) / d, h = z * Math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d;
    return [Math.max(0, c - h), Math.min(1, c + h)];
  }

  function rate(k, n) {
    if (k === null || k === undefined || !n) { return "–"; }
    var ci = wilson(k, n);
    return k + "/" + n + " [" + Math.round(100 * ci[0]) + "–" + Math.round(100 * ci[1]) + "%]";
  }

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function fmt(v) { return v === null || v === undefined || !isFinite(v) ? "" : Number(v).toPrecision(3); }

  function loadSweep(name, done) {
    var data = window.MOEBENCH_COMPARE || {};
    if (data[name]) { done(data[name]); return; }
    var s = document.createElement("script");
    s.src = "compare/" + encodeURIComponent(name) + ".js";
    s.onload = function () { done(window.MOEBENCH_COMPARE[name]); };
    document.head.appendChild(s);
  }

  function compare() {
    var sweeps = JSON.parse(document.getElementById("compare-sweeps").textContent);
    var names = Object.keys(sweeps);
    var first = names.filter(function (n) { return sweeps[n].labels.length > 1; })
      .sort(function (a, b) { return sweeps[b].runs - sweeps[a].runs; })[0] || names[0];
    var sel = {}, loaded = {};
    ["A", "B"].forEach(function (side, i) {
      sel[side] = { sweep: document.getElementById("sweep-" + side), variant: document.getElementById("variant-" + side) };
      names.forEach(function (n) {
        var o = document.createElement("option"); o.value = n; o.textContent = n; sel[side].sweep.appendChild(o);
      });
      sel[side].sweep.value = first;
      sel[side].sweep.addEventListener("change", function () { fillVariants(side, 0); });
      sel[side].variant.addEventListener("change", update);
      fillVariants(side, i);
    });
    document.getElementById("compare-cell").addEventListener("change", drawCurves);

    function fillVariants(side, index) {
      var name = sel[side].sweep.value;
      var v = sel[side].variant;
      v.innerHTML = "";
      ((sweeps[name] || {}).labels || []).forEach(function (lab) {
        var o = document.createElement("option"); o.value = lab; o.textContent = lab; v.appendChild(o);
      });
      v.selectedIndex = Math.min(index, v.options.length - 1);
      loadSweep(name, function (d) { loaded[name] = d; update(); });
    }

    function sides() {
      var a = loaded[sel.A.sweep.value], b = loaded[sel.B.sweep.value];
      return a && b ? [a, b] : null;
    }

    function pairs() {
      var ab = sides();
      if (!ab) { return []; }
      var byTitle = {};
      ab[1].cells.forEach(function (c) { byTitle[c.title] = c; });
      return ab[0].cells.filter(function (c) { return byTitle[c.title]; }).map(function (c) { return [c, byTitle[c.title]]; });
    }

    function update() {
      var ab = sides();
      if (!ab) { return; }
      var va = sel.A.variant.value, vb = sel.B.variant.value;
      var head = ["cell", "A runs", "A success", "A stuck", "A median error", "A fit time (s)",
        "B runs", "B success", "B stuck", "B median error", "B fit time (s)"];
      var html = "<p class=\"caption\">A = " + esc(sel.A.sweep.value + " / " + va) + ", B = " +
        esc(sel.B.sweep.value + " / " + vb) + "</p><table class=\"data sortable filterable compare-table\"><thead><tr>" +
        head.map(function (h) { return "<th>" + h + "</th>"; }).join("") + "</tr></thead><tbody>";
      var cellSel = document.getElementById("compare-cell");
      var keep = cellSel.value;
      cellSel.innerHTML = "";
      pairs().forEach(function (p) {
        var a = p[0].stats[va] || {}, b = p[1].stats[vb] || {};
        var o = document.createElement("option"); o.value = p[0].title; o.textContent = p[0].title; cellSel.appendChild(o);
        html += "<tr><td><a href=\"sweeps/" + encodeURIComponent(sel.A.sweep.value) + "/cells/" +
          encodeURIComponent(p[0].key) + ".html\">" + esc(p[0].title) + "</a></td>" +
          [a, b].map(function (s) {
            return "<td>" + (s.runs || 0) + "</td><td>" + rate(s.success, s.runs) + "</td><td>" + rate(s.stuck, s.runs) +
              "</td><td>" + fmt(s.error) + "</td><td>" + fmt(s.time) + "</td>";
          }).join("") + "</tr>";
      });
      html += "</tbody></table>";
      var holder = document.getElementById("compare-table");
      holder.innerHTML = html;
      enhanceTables(holder);
      if (keep) { cellSel.value = keep; }
      drawCurves();
    }

    function drawCurves() {
      var ab = sides();
      if (!ab) { return; }
      var title = document.getElementById("compare-cell").value;
      var match = pairs().filter(function (p) { return p[0].title === title; })[0];
      if (!match) { return; }
      var va = sel.A.variant.value, vb = sel.B.variant.value;
      var panels = [[match[0], va, ab[0], "A"], [match[1], vb, ab[1], "B"]].map(function (q) {
        var st = q[0].stats[q[1]] || {};
        var series = st.band ? [Object.assign({ name: q[3] + ": " + q[1], color: q[2].colors[q[1]] || "#444444", step: true }, st.band)] : [];
        return { title: q[3] + ": " + q[2].name + " / " + q[1], series: series };
      });
      var metric = ab[0].metric === ab[1].metric ? ab[0].metric : ab[0].metric + " / " + ab[1].metric;
      render(document.getElementById("compare-figure"), { x: "iteration + 1", columns: 2, shared: true,
        y: metric.replace(/_/g, " ") + " (median, IQR band)", xlog: true,
        ylog: ab[0].metric !== "log_likelihood" }, panels, false);
    }
  }

  window.MoebenchSite = { compare: compare, render: render };
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("div.figure[data-spec]").forEach(drawFigure);
    enhanceTables(document);
  });
})();
