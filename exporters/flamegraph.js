// Interactive flame graph: hover details, click to zoom, regex search. Inlined into bpfprof's SVG.
// The SVG defines `fg_cfg` (fontSize, fontWidth, width, xpad, eps) before this script; nothing else
// is global. Keys: Ctrl-F (or Cmd-F) searches, Escape resets zoom and search.
// Each frame is a <g> in <g id="frames"> holding <title>NAME (N samples, P%)</title>, <rect>, <text>;
// everything here is derived from those, so the file stays the one source of truth.
(function () {
  "use strict";

  var fg_state = null;
  var FG_MATCH_FILL = "rgb(230,0,230)";
  // "NAME (N samples, P%)", or with a differential's note "NAME (N samples, P%; +D%)"
  var FG_TITLE = /^([\s\S]*) \(([\d,]+) [^,]*, [\d.]+%(?:; [^()]*)?\)$/;

  function fg_set_class(el, name, on) {
    var classes = (el.getAttribute("class") || "").split(/\s+/).filter(function (c) {
      return c !== "" && c !== name;
    });
    if (on) {
      classes.push(name);
    }
    el.setAttribute("class", classes.join(" "));
  }

  // The label that fits in `width` px: the name, or its start and "..", or nothing below 3 characters.
  function fg_label(name, width) {
    var chars = Math.floor(width / (fg_cfg.fontSize * fg_cfg.fontWidth));
    if (chars < 3) {
      return "";
    }
    if (name.length <= chars) {
      return name;
    }
    return name.substring(0, chars - 2) + "..";
  }

  function fg_num(v) {
    return String(Math.round(v * 100) / 100);
  }

  function fg_place(f, x, w) {
    f.rect.setAttribute("x", fg_num(x));
    f.rect.setAttribute("width", fg_num(w));
    f.text.setAttribute("x", fg_num(x + 3));
    f.text.textContent = fg_label(f.name, w);
  }

  function fg_show_details(f) {
    fg_state.details.textContent = "Function: " + f.title;
  }

  function fg_clear_details() {
    fg_state.details.textContent = " ";
  }

  // Zoom into frame f: it and its descendants fill the width, its ancestors span it (dimmed), the rest hide.
  function fg_zoom(f) {
    var st = fg_state;
    if (f === st.root) {
      fg_unzoom();
      return;
    }
    var eps = fg_cfg.eps;
    var full = fg_cfg.width - 2 * fg_cfg.xpad;
    var ratio = full / f.w;
    for (var i = 0; i < st.frames.length; i++) {
      var e = st.frames[i];
      var hidden = false;
      var parent = false;
      if (e.y > f.y) {
        if (e.x <= f.x + eps && e.x + e.w >= f.x + f.w - eps) {
          parent = true;
          fg_place(e, fg_cfg.xpad, full);
        } else {
          hidden = true;
        }
      } else if (e.x >= f.x - eps && e.x + e.w <= f.x + f.w + eps) {
        fg_place(e, fg_cfg.xpad + (e.x - f.x) * ratio, e.w * ratio);
      } else {
        hidden = true;
      }
      fg_set_class(e.g, "hide", hidden);
      fg_set_class(e.g, "parent", parent);
    }
    st.zoomed = f;
    fg_set_class(st.unzoomButton, "hide", false);
  }

  function fg_unzoom() {
    var st = fg_state;
    for (var i = 0; i < st.frames.length; i++) {
      var e = st.frames[i];
      fg_place(e, e.x, e.w);
      fg_set_class(e.g, "hide", false);
      fg_set_class(e.g, "parent", false);
    }
    st.zoomed = null;
    fg_set_class(st.unzoomButton, "hide", true);
  }

  // Highlight the frames whose name matches the regular expression `term`; report the share they cover.
  function fg_search(term) {
    var st = fg_state;
    var re;
    try {
      re = new RegExp(term);
    } catch (err) {
      st.details.textContent = "Invalid regular expression: " + term;
      return;
    }
    fg_reset_search();
    var hits = [];
    for (var i = 0; i < st.frames.length; i++) {
      var f = st.frames[i];
      if (re.test(f.name)) {
        f.rect.setAttribute("fill", FG_MATCH_FILL);
        hits.push(f);
      }
    }
    // A match inside another match covers no new samples: count the outermost ones only.
    hits.sort(function (a, b) {
      return a.x - b.x || b.w - a.w;
    });
    var covered = 0;
    var end = -Infinity;
    for (var j = 0; j < hits.length; j++) {
      if (hits[j].x >= end - fg_cfg.eps) {
        covered += hits[j].samples;
        end = hits[j].x + hits[j].w;
      }
    }
    var pct = st.root && st.root.samples > 0 ? (100 * covered) / st.root.samples : 0;
    st.term = term;
    st.matched.textContent = "Matched: " + pct.toFixed(1) + "%";
    fg_set_class(st.matched, "hide", false);
    st.searchButton.textContent = "Reset Search";
    fg_set_class(st.searchButton, "active", true);
  }

  function fg_reset_search() {
    var st = fg_state;
    for (var i = 0; i < st.frames.length; i++) {
      st.frames[i].rect.setAttribute("fill", st.frames[i].fill);
    }
    st.term = null;
    st.matched.textContent = " ";
    fg_set_class(st.matched, "hide", true);
    st.searchButton.textContent = "Search";
    fg_set_class(st.searchButton, "active", false);
  }

  function fg_search_prompt() {
    var term = window.prompt("Search for a frame (regular expression, e.g. ^ext4_)", fg_state.term || "");
    if (term !== null && term !== "") {
      fg_search(term);
    }
  }

  function fg_reset_all() {
    fg_unzoom();
    fg_reset_search();
    fg_clear_details();
  }

  function fg_read_frame(g) {
    var title = g.getElementsByTagName("title")[0].textContent;
    var rect = g.getElementsByTagName("rect")[0];
    var text = g.getElementsByTagName("text")[0];
    var m = FG_TITLE.exec(title);
    return {
      g: g,
      rect: rect,
      text: text,
      title: title,
      name: m ? m[1] : title,
      samples: m ? parseInt(m[2].replace(/,/g, ""), 10) : 0,
      x: parseFloat(rect.getAttribute("x")),
      w: parseFloat(rect.getAttribute("width")),
      y: parseFloat(rect.getAttribute("y")),
      fill: rect.getAttribute("fill"),
    };
  }

  function fg_init() {
    var doc = document;
    var st = {
      details: doc.getElementById("details"),
      unzoomButton: doc.getElementById("unzoom"),
      searchButton: doc.getElementById("search"),
      matched: doc.getElementById("matched"),
      frames: [],
      root: null,
      zoomed: null,
      term: null,
    };
    fg_state = st;
    var groups = doc.getElementById("frames").getElementsByTagName("g");
    for (var i = 0; i < groups.length; i++) {
      var f = fg_read_frame(groups[i]);
      st.frames.push(f);
      if (st.root === null || f.y > st.root.y) {
        st.root = f;
      }
      (function (frame) {
        frame.g.addEventListener("mouseover", function () {
          fg_show_details(frame);
        });
        frame.g.addEventListener("mouseout", fg_clear_details);
        frame.g.addEventListener("click", function () {
          fg_zoom(frame);
        });
      })(f);
    }
    st.unzoomButton.addEventListener("click", fg_unzoom);
    st.searchButton.addEventListener("click", function () {
      if (st.term !== null) {
        fg_reset_search();
      } else {
        fg_search_prompt();
      }
    });
    window.addEventListener("keydown", function (e) {
      if ((e.ctrlKey || e.metaKey) && (e.key === "f" || e.key === "F")) {
        e.preventDefault();
        fg_search_prompt();
      } else if (e.key === "Escape") {
        fg_reset_all();
      }
    });
  }

  if (typeof document !== "undefined" && document.getElementById("frames")) {
    fg_init();
  }
})();
