/* TTX Exchange pages: small enhancements on top of server-rendered HTML and htmx.
   Everything here is optional: the pages and the order form work without it. */
(function () {
  "use strict";

  var doc = document;

  /* --- live regions: tell the server which versions are shown, so a poll only
         swaps what changed (204 when nothing did). --- */
  doc.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.hasAttribute("data-live-poller")) return;
    var shown = [];
    doc.querySelectorAll("[data-live]").forEach(function (region) {
      shown.push(region.getAttribute("data-live") + ":" + region.getAttribute("data-v"));
    });
    event.detail.parameters.v = shown.join(",");
  });

  /* --- a hidden tab does not poll (nor sends a poll htmx queued behind a slow one, nor a
         refresh asked by the socket); it refreshes when it is visible again. While the page's
         socket is up (static/js/streams.js: window.streamLive) the 1.5 s poll goes out every
         15 s only, for what no stream carries (deposits). Decided here, not by hx-trigger
         [...] filters: htmx evaluates those with Function(), which the Content-Security-Policy
         refuses. A poll is the request without a triggering event. --- */
  var lastPoll = 0;
  doc.addEventListener("htmx:confirm", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.hasAttribute("data-live-poller")) return;
    if (doc.visibilityState !== "visible") { event.preventDefault(); return; }
    var poll = !event.detail.triggeringEvent;
    if (poll && window.streamLive && Date.now() - lastPoll < 15000) { event.preventDefault(); return; }
    lastPoll = Date.now();
  });

  /* --- bars sized by the server (the book's depth, the flywheel's progress): data-percent
         becomes the --percent the stylesheet draws them with. A style="" attribute would be
         refused by the Content-Security-Policy; a property set from script is not. --- */
  function bars() {
    doc.querySelectorAll("[data-percent]").forEach(function (bar) {
      bar.style.setProperty("--percent", bar.getAttribute("data-percent") + "%");
    });
  }
  doc.addEventListener("htmx:afterSwap", bars);
  doc.addEventListener("htmx:oobAfterSwap", bars);

  /* --- toasts fade away --- */
  doc.addEventListener("htmx:oobAfterSwap", function () {
    doc.querySelectorAll("#toasts .toast:not([data-timer])").forEach(function (toast) {
      toast.setAttribute("data-timer", "1");
      setTimeout(function () { toast.remove(); }, 6000);
    });
  });

  /* --- the exchange's own 503 (service_unavailable: the engine or the database away) carries
         the ticket or a toast saying so: swapped as a 4xx is. htmx swaps no 5xx, and a proxy's
         503 page must not replace the ticket, so only an answer with one of the two. --- */
  doc.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status !== 503) return;
    var body = xhr.responseText || "";
    if (body.indexOf('id="order-entry"') !== -1 || body.indexOf('hx-swap-oob="beforeend:#toasts"') !== -1) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  /* --- an htmx form that got no answer to show (a 500, a proxy's 502, the web away): htmx
         swaps nothing, so the click looked ignored; a toast says so (base.html's sentence). --- */
  function noAnswer(event) {
    var elt = event.detail.elt;
    var toasts = doc.getElementById("toasts");
    if (!elt || elt.tagName !== "FORM" || !toasts) return;
    var toast = doc.createElement("p");
    toast.className = "toast toast-error";
    toast.setAttribute("role", "alert");
    toast.setAttribute("data-timer", "1");
    toast.textContent = toasts.getAttribute("data-no-answer");
    toasts.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }
  doc.addEventListener("htmx:responseError", noAnswer);
  doc.addEventListener("htmx:sendError", noAnswer);

  /* --- the order ticket --- */
  function ticket() { return doc.getElementById("order-entry"); }

  function checked(form, name) {
    var input = form.querySelector("input[name='" + name + "']:checked");
    return input ? input.value : "";
  }

  function syncTicket() {
    var form = ticket();
    if (!form) return;
    form.classList.add("js");
    var side = checked(form, "side") || "buy";
    var type = checked(form, "type") || "limit";
    form.setAttribute("data-side", side);
    // Only the fields of this order type are shown and submitted.
    form.querySelectorAll("[data-types]").forEach(function (field) {
      var on = field.getAttribute("data-types").split(" ").indexOf(type) !== -1;
      field.hidden = !on;
      field.querySelectorAll("input").forEach(function (input) { input.disabled = !on; });
    });
    // GTC only makes sense for a limit order.
    var tif = form.querySelector("select[name='time_in_force']");
    if (tif) {
      var gtc = tif.querySelector("option[value='GTC']");
      if (gtc) gtc.disabled = type !== "limit";
      if (type !== "limit" && tif.value === "GTC") tif.value = "";
    }
    var submit = form.querySelector("#order-submit");
    if (submit) {
      var base = form.getAttribute("data-base") || "";
      submit.textContent = (side === "buy" ? "Buy " : "Sell ") + base;
      submit.classList.toggle("btn-buy", side === "buy");
      submit.classList.toggle("btn-sell", side === "sell");
    }
    doc.querySelectorAll("[data-balance-side]").forEach(function (row) {
      row.classList.toggle("is-relevant", row.getAttribute("data-balance-side") === side);
    });
    estimate();
  }

  /* The ticket's estimate, exact: amounts as decimal text, in BigInt units of 1e-8 (the
     server's grid), so that it reads what the order will be charged. In floats it was
     rounded: the fee half up past the server's (rounded down), 1e21-scale totals to 16
     digits, and any total to cents (0.0005 ETH read 0.00). Text with more than 8 places or
     in exponent form (the server refuses both) gives null.
     (tests/pages/test_ticket_estimate.py runs these functions in Node.) */
  var PLACES = 8;
  var UNIT = BigInt(10) ** BigInt(PLACES);

  function amountUnits(text) {
    var match = /^([0-9]+)(?:\.([0-9]{1,8}))?$/.exec(String(text).trim());
    if (!match) return null;
    return BigInt(match[1]) * UNIT + BigInt((match[2] || "").padEnd(PLACES, "0"));
  }

  /* Units of 1e-8 as the pages' amount filter writes them: grouped, no trailing zeros. */
  function unitsText(units) {
    var whole = (units / UNIT).toString().replace(/\B(?=([0-9]{3})+$)/g, ",");
    var fraction = (units % UNIT).toString().padStart(PLACES, "0").replace(/0+$/, "");
    return fraction ? whole + "." + fraction : whole;
  }

  /* {total, fee} of `quantity` at `price` (texts) for `side`, the fee at `bps` (the taker
     rate, the most it pays) rounded down to 8 places as the server does: a buy pays
     notional + fee, a sell receives notional - fee. Null when an amount is not one. */
  function ticketEstimate(quantity, price, bps, side) {
    var q = amountUnits(quantity), p = amountUnits(price);
    if (q === null || p === null) return null;
    var notional = q * p;  // units of 1e-16
    var fee = (notional * BigInt(bps)) / (BigInt(10000) * UNIT);  // units of 1e-8, rounded down
    var exact = notional / UNIT;  // the notional in units of 1e-8 (cut, exact on a market's grid)
    return { total: unitsText(side === "sell" ? exact - fee : exact + fee), fee: unitsText(fee) };
  }

  function estimate() {
    var form = ticket();
    if (!form) return;
    var out = form.querySelector("#order-total");
    var quantity = (form.querySelector("#order-quantity") || {}).value || "";
    var priceInput = form.querySelector("#order-price");
    var price = priceInput && !priceInput.disabled ? priceInput.value : "";
    if (!price) {
      var stop = form.querySelector("#order-stop-price");
      price = stop && !stop.disabled ? stop.value : "";
    }
    if (!price) {
      var last = doc.querySelector(".spread-last");
      price = last ? last.textContent.replace(/,/g, "") : "";
    }
    var bps = parseInt(form.getAttribute("data-fee-bps") || "0", 10);
    var feeOut = form.querySelector("#order-fee");
    var figures = ticketEstimate(quantity, price, bps, checked(form, "side"));
    out.textContent = figures ? figures.total : "—";
    if (feeOut) feeOut.textContent = figures ? figures.fee : "—";
  }

  /* --- a ticket posted after a login elsewhere: send the token of the current cookie, so
         the kept form can be submitted again once the trader has logged in (another tab). --- */
  doc.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    if (!elt || elt.id !== "order-entry") return;
    var match = doc.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) event.detail.parameters.csrfmiddlewaretoken = decodeURIComponent(match[1]);
  });

  doc.addEventListener("change", function (event) {
    if (event.target.closest && event.target.closest("#order-entry")) syncTicket();
  });
  doc.addEventListener("input", function (event) {
    if (event.target.closest && event.target.closest("#order-entry")) estimate();
  });
  doc.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== "order-entry") return;
    syncTicket();
    // The button that sent the ticket was disabled while it went and then replaced, so focus
    // fell to <body> (a keyboard user was back at the top of the page): it goes to the first
    // field refused, else to the new ticket's button.
    var active = doc.activeElement;
    if (active && active !== doc.body && doc.contains(active)) return;
    var form = ticket();
    var target = form && (form.querySelector("[aria-invalid='true']:not([disabled])") || form.querySelector("#order-submit"));
    if (target) target.focus();
  });
  doc.addEventListener("htmx:afterSettle", function () { if (ticket()) syncTicket(); });

  /* --- a cancel sent from the keyboard: its row goes when the list is refreshed, and the focus
         with it (to <body>, the top of the page); it goes to the Cancel now in that place of the
         list instead, else to the list's heading. --- */
  var cancelled = null;  // {live, index, at} of the last cancel sent from a live list
  doc.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || !form.matches || !form.matches("form[hx-post$='/cancel']")) return;
    var region = form.closest("[data-live]");
    if (!region) return;
    var buttons = Array.prototype.slice.call(region.querySelectorAll("form[hx-post$='/cancel'] button"));
    cancelled = { live: region.getAttribute("data-live"), index: buttons.indexOf(form.querySelector("button")), at: Date.now() };
  });
  doc.addEventListener("htmx:afterSettle", function () {
    if (!cancelled) return;
    if (Date.now() - cancelled.at > 10000) { cancelled = null; return; }
    var active = doc.activeElement;
    if (active && active !== doc.body && doc.contains(active)) return;
    var region = doc.querySelector("[data-live='" + cancelled.live + "']");
    if (!region) return;
    var buttons = region.querySelectorAll("form[hx-post$='/cancel'] button");
    var target = buttons[Math.min(cancelled.index, buttons.length - 1)];
    if (!target) {
      var section = region.closest("section[aria-labelledby]");
      target = section && doc.getElementById(section.getAttribute("aria-labelledby"));
      if (target) target.setAttribute("tabindex", "-1");
    }
    cancelled = null;
    if (target) target.focus();
  });

  /* --- clicking a book level puts its price in the ticket --- */
  doc.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest(".price-btn[data-price]");
    if (!button) return;
    var form = ticket();
    if (!form) return;
    var price = form.querySelector("#order-price");
    if (!price) return;
    var type = checked(form, "type");
    if (type !== "limit") {
      var limit = form.querySelector("#type-limit");
      if (limit) { limit.checked = true; syncTicket(); }
    }
    price.value = button.getAttribute("data-price");
    price.dispatchEvent(new Event("input", { bubbles: true }));
    price.classList.remove("flash");
    void price.offsetWidth;
    price.classList.add("flash");
  });

  /* --- candle chart (TradingView Lightweight Charts) --- */
  function initChart() {
    var host = doc.getElementById("chart");
    if (!host || !window.LightweightCharts) return;
    var LC = window.LightweightCharts;
    var places = parseInt(host.getAttribute("data-price-places") || "2", 10);
    var tick = parseFloat(host.getAttribute("data-tick") || "0.01");
    var css = getComputedStyle(doc.documentElement);
    var color = function (name, fallback) { return (css.getPropertyValue(name) || fallback).trim(); };
    var up = color("--up", "#2ebd85"), down = color("--down", "#f6465d");
    var chart = LC.createChart(host, {
      autoSize: true,
      layout: {
        background: { type: LC.ColorType.Solid, color: "transparent" },
        textColor: color("--muted", "#8b949e"),
        fontFamily: color("--font", "system-ui, sans-serif"),
        attributionLogo: true
      },
      grid: { vertLines: { color: "rgba(139,148,158,0.08)" }, horzLines: { color: "rgba(139,148,158,0.08)" } },
      rightPriceScale: { borderColor: color("--border", "#262d37") },
      timeScale: { borderColor: color("--border", "#262d37"), timeVisible: true, secondsVisible: false },
      crosshair: { mode: LC.CrosshairMode.Normal }
    });
    var candles = chart.addSeries(LC.CandlestickSeries, {
      upColor: up, downColor: down, borderUpColor: up, borderDownColor: down, wickUpColor: up, wickDownColor: down,
      priceFormat: { type: "price", precision: places, minMove: tick }
    });
    // Volume sits on its own hidden overlay scale: no label or line of it on the price axis.
    var volume = chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "", lastValueVisible: false, priceLineVisible: false
    });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.24 } });

    var url = host.getAttribute("data-candles-url");
    var interval = "1m";
    var busy = false;
    var fitted = false;

    function load() {
      if (busy || doc.visibilityState !== "visible") return;
      busy = true;
      fetch(url + "?interval=" + interval + "&limit=300", { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (rows) {
          var bars = [], vols = [];
          rows.forEach(function (c) {
            var t = Math.floor(Date.parse(c.time) / 1000);
            var o = parseFloat(c.open), cl = parseFloat(c.close);
            bars.push({ time: t, open: o, high: parseFloat(c.high), low: parseFloat(c.low), close: cl });
            vols.push({ time: t, value: parseFloat(c.volume), color: cl >= o ? "rgba(46,189,133,0.35)" : "rgba(246,70,93,0.35)" });
          });
          candles.setData(bars);
          volume.setData(vols);
          host.classList.toggle("is-empty", bars.length === 0);
          if (!fitted && bars.length) { chart.timeScale().fitContent(); fitted = true; }
        })
        .catch(function () { /* keep the last picture; the next poll retries */ })
        .finally(function () { busy = false; });
    }

    doc.querySelectorAll("[data-interval]").forEach(function (button) {
      button.addEventListener("click", function () {
        interval = button.getAttribute("data-interval");
        fitted = false;
        doc.querySelectorAll("[data-interval]").forEach(function (b) {
          b.setAttribute("aria-pressed", b === button ? "true" : "false");
        });
        load();
      });
    });
    load();
    setInterval(load, 3000);
    doc.addEventListener("visibilitychange", load);
    doc.body.addEventListener("live-refresh", load);  // right after the trader's own order or cancel
  }

  function ready() {
    // What only works with this script (the book's "Click a price to use it", the chart's
    // intervals) is hidden without it.
    doc.querySelectorAll("[data-needs-js]").forEach(function (el) { el.hidden = false; });
    bars();
    syncTicket();
    initChart();
  }
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
