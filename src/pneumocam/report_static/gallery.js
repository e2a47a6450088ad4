/* The CAM gallery: filters, sort, search, detail view, keyboard navigation.
   Reads the JSON embedded in the page (#gallery-data); writes text with textContent only,
   so no string from the data is ever parsed as HTML. No network, no library. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gallery-data").textContent);
  var runs = data.runs, images = data.images, entries = data.entries;
  var byKey = {};
  runs.forEach(function (r) { byKey[r.key] = r; });
  function $(id) { return document.getElementById(id); }
  var f = { run: $("f-run"), method: $("f-method"), cell: $("f-cell"), label: $("f-label"),
            view: $("f-view"), hit: $("f-hit"), sort: $("f-sort"), search: $("f-search") };
  var grid = $("grid"), count = $("count"), note = $("note"), detail = $("detail");
  var CELLS = { tp: "TP", fp: "FP", fn: "FN", tn: "TN" };
  var CELL_TEXT = { tp: "true positive", fp: "false positive", fn: "false negative", tn: "true negative" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function option(select, value, text) { var o = el("option", null, text); o.value = value; select.appendChild(o); }
  function uniq(list) { return list.filter(function (v, i) { return list.indexOf(v) === i; }); }
  function fmt(x, d) { return (x === null || x === undefined) ? "n/a" : Number(x).toFixed(d === undefined ? 3 : d); }

  var runNames = uniq(runs.map(function (r) { return r.run; }));
  var methods = uniq(runs.map(function (r) { return r.method; }));
  option(f.run, "*", "all runs");
  runNames.forEach(function (r) { option(f.run, r, r); });
  option(f.method, "*", "all methods");
  methods.forEach(function (m) { option(f.method, m, m); });

  // Start from the run and method named in the address (#run=...&method=...), else the first with maps.
  var params = new URLSearchParams(location.hash.slice(1));
  var first = runs.filter(function (r) { return r.has_maps; })[0] || runs[0];
  f.run.value = runNames.indexOf(params.get("run")) >= 0 ? params.get("run") : (first ? first.run : "*");
  f.method.value = methods.indexOf(params.get("method")) >= 0 ? params.get("method") : (first ? first.method : "*");

  var shown = [];   // [{key, e}] in display order
  var current = -1; // index into shown of the open detail view

  function selectedRuns() {
    return runs.filter(function (r) {
      return (f.run.value === "*" || r.run === f.run.value) && (f.method.value === "*" || r.method === f.method.value);
    });
  }
  function keep(e) {
    var img = images[e.i];
    if (f.cell.value !== "*" && e.c !== f.cell.value) { return false; }
    if (f.label.value !== "*" && String(img.label) !== f.label.value) { return false; }
    if (f.view.value !== "*" && img.view !== f.view.value) { return false; }
    if (f.hit.value === "hit" && e.h !== true) { return false; }
    if (f.hit.value === "miss" && e.h !== false) { return false; }
    var q = f.search.value.trim().toLowerCase();
    if (q && img.id.toLowerCase().indexOf(q) < 0) { return false; }
    return true;
  }
  function sortKey(a, b) {
    var s = f.sort.value.split(":"), field = s[0], dir = s[1] === "asc" ? 1 : -1;
    if (field === "id") {
      var x = images[a.e.i].id, y = images[b.e.i].id;
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    var va = a.e[field], vb = b.e[field];
    if (va === null && vb === null) { return 0; }
    if (va === null) { return 1; }   // images without the number go last either way
    if (vb === null) { return -1; }
    return dir * (va - vb);
  }

  function card(item, pos, several) {
    var img = images[item.e.i], run = byKey[item.key];
    var b = el("button", "card");
    b.type = "button";
    b.setAttribute("data-pos", String(pos));
    b.setAttribute("data-cell", item.e.c);
    var pic = el("img");
    pic.loading = "lazy";
    pic.src = item.e.t;
    pic.width = 160; pic.height = 160;
    pic.alt = "Class activation map of " + img.id + " (" + run.run + ", " + run.method + "), p = " +
      fmt(item.e.p) + ", " + CELL_TEXT[item.e.c];
    b.appendChild(pic);
    b.appendChild(el("span", "pid", img.id));
    var meta = el("span", "meta");
    meta.appendChild(el("span", "badge " + item.e.c, CELLS[item.e.c]));
    meta.appendChild(el("span", null, "p " + fmt(item.e.p, 2)));
    if (item.e.h !== null) { meta.appendChild(el("span", null, item.e.h ? "hit" : "miss")); }
    if (several) { meta.appendChild(el("span", null, run.run + "/" + run.method)); }
    b.appendChild(meta);
    b.addEventListener("click", function () { open(pos); });
    return b;
  }

  function update() {
    var sel = selectedRuns(), total = 0;
    shown = [];
    sel.forEach(function (r) {
      var list = entries[r.key] || [];
      total += list.length;
      list.forEach(function (e) { if (keep(e)) { shown.push({ key: r.key, e: e }); } });
    });
    shown.sort(sortKey);
    while (note.firstChild) { note.removeChild(note.firstChild); }
    sel.filter(function (r) { return !r.has_maps; }).forEach(function (r) {
      var p = el("p", "todo", "The maps of " + r.run + " (" + r.method + ") " +
        (r.problem ? "cannot be shown: " + r.problem + ". " : "were not saved, so its images are not shown. ") + "Add them with: ");
      p.appendChild(el("code", null, r.command));
      note.appendChild(p);
    });
    var frag = document.createDocumentFragment(), several = sel.length > 1;
    shown.forEach(function (item, pos) { frag.appendChild(card(item, pos, several)); });
    while (grid.firstChild) { grid.removeChild(grid.firstChild); }
    grid.appendChild(frag);
    if (!shown.length) { grid.appendChild(el("p", "empty", "No image matches these filters.")); }
    count.textContent = shown.length + " of " + total + " images shown";
    count.setAttribute("data-shown", String(shown.length));
    try {
      history.replaceState(null, "", "#run=" + encodeURIComponent(f.run.value) + "&method=" + encodeURIComponent(f.method.value));
    } catch (err) { /* some browsers refuse on file://: the filters still work */ }
  }

  function fact(dl, name, value) { dl.appendChild(el("dt", null, name)); dl.appendChild(el("dd", null, value)); }
  function figure(src, alt, caption) {
    var fig = el("figure"), pic = el("img");
    pic.src = src; pic.alt = alt;
    fig.appendChild(pic);
    fig.appendChild(el("figcaption", null, caption));
    return fig;
  }

  function open(pos) {
    if (pos < 0 || pos >= shown.length) { return; }
    current = pos;
    var item = shown[pos], e = item.e, img = images[e.i], run = byKey[item.key];
    $("d-title").textContent = img.id;
    $("d-pos").textContent = (pos + 1) + " / " + shown.length;
    var body = $("d-body");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    body.appendChild(figure(e.f, "Class activation map of " + img.id + " overlaid on the radiograph, with the radiologists' boxes (cyan) and the map's peak (green +)",
      run.run + ", " + run.method + ": map overlay, boxes, peak"));
    body.appendChild(figure(img.xr, "Radiograph of " + img.id + " without overlay", "the radiograph alone"));
    var dl = el("dl", "facts");
    fact(dl, "patientId", img.id);
    fact(dl, "true label", img.label === 1 ? "pneumonia (" + (img.cls || "positive") + ")" : "no pneumonia" + (img.cls ? " (" + img.cls + ")" : ""));
    fact(dl, "view / sex / age", [img.view || "?", img.sex || "?", img.age === null ? "?" : String(img.age)].join(" / "));
    fact(dl, "run / method / split", run.run + " / " + run.method + " / " + run.split);
    fact(dl, "p(pneumonia)", fmt(e.p, 4));
    fact(dl, "decision", (e.p >= run.threshold ? "positive" : "negative") + " at the operating threshold " + fmt(run.threshold, 4) + ": " + CELL_TEXT[e.c]);
    fact(dl, "boxes", String(img.boxes.length));
    fact(dl, "pointing game", e.h === null ? "not measured (no box)" : (e.h ? "hit: the peak is in a box" : "miss"));
    fact(dl, "IoU of the thresholded map", fmt(e.iou));
    fact(dl, "map mass in boxes", fmt(e.mass));
    fact(dl, "RSNA score of its boxes", fmt(e.rsna));
    var facts = el("div");
    facts.appendChild(dl);
    body.appendChild(facts);
    var others = $("d-others");
    while (others.firstChild) { others.removeChild(others.firstChild); }
    runs.forEach(function (r) {
      if (r.key === item.key) { return; }
      var o = (entries[r.key] || []).filter(function (x) { return x.i === e.i; })[0];
      if (!o) { return; }
      others.appendChild(figure(o.f, "Class activation map of " + img.id + " by " + r.run + " (" + r.method + ")",
        r.run + " / " + r.method + ": p " + fmt(o.p, 3) + ", " + CELL_TEXT[o.c] + (o.h === null ? "" : (o.h ? ", hit" : ", miss"))));
    });
    $("d-others-wrap").hidden = !others.firstChild;
    detail.hidden = false;
    $("d-close").focus();
  }
  function close() {
    detail.hidden = true;
    var b = grid.querySelector('[data-pos="' + current + '"]');
    current = -1;
    if (b) { b.focus(); }
  }

  Object.keys(f).forEach(function (k) { f[k].addEventListener(k === "search" ? "input" : "change", update); });
  $("d-close").addEventListener("click", close);
  $("d-prev").addEventListener("click", function () { open(current - 1); });
  $("d-next").addEventListener("click", function () { open(current + 1); });
  detail.addEventListener("click", function (ev) { if (ev.target === detail) { close(); } });
  document.addEventListener("keydown", function (ev) {
    if (detail.hidden) { return; }
    if (ev.key === "Escape") { ev.preventDefault(); close(); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); open(current + 1); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); open(current - 1); }
  });
  update();
}());
