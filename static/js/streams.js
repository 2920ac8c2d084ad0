/* Live pages over the WebSocket streams (docs/streams.md, docs/pages.md "Live updates").
   The socket says what changed (book, trades, ticker, the trader's orders and fills) and
   the page refreshes those regions at once; while the socket is up the 1.5 s poll pauses
   (window.streamLive), and it resumes by itself when the socket drops. A filled or expired
   order shows a notification with its average price and fee; the book marks the trader's
   own resting orders. Without JavaScript or WebSocket, the pages keep polling. */
(function () {
  "use strict";

  var doc = document;
  var config = doc.querySelector("[data-stream]");
  if (!config || !window.WebSocket) return;
  var market = config.getAttribute("data-market") || "";
  var signedIn = config.hasAttribute("data-user");
  var channels = market ? ["book:" + market, "trades:" + market, "ticker:" + market] : [];
  if (signedIn) channels.push("orders", "fills");
  if (!channels.length) return;

  var sequences = {};
  var statuses = {};  // order id -> last status seen
  var pending = null;
  var retry = 500;

  function refresh() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      var target = config.getAttribute("data-refresh");  // a region without a poller (history)
      if (target && window.htmx) {
        window.htmx.ajax("GET", window.location.href, { target: target, select: target, swap: "outerHTML" });
      } else {
        doc.body.dispatchEvent(new CustomEvent("live-refresh"));
      }
    }, 50);
  }

  /* The reason's sentence (accounts.error_text, put in the page by base.html), as the ticket and
     the history say it: the stream sends the code (ioc_remainder). */
  function reasonSentence(code) {
    var box = doc.getElementById("toasts");
    try {
      var sentences = JSON.parse((box && box.getAttribute("data-reasons")) || "{}");
      if (sentences[code]) return sentences[code];
    } catch (error) { /* no sentences: the code, readable */ }
    return code.replace(/_/g, " ");
  }

  /* An amount as the pages write it: its decimal text without trailing zeros. Not through
     Number(): a float wrote a fee of 0.00000084 as 8.4e-7 and rounded past 16 digits
     (tests/streams/test_notice_amounts.py runs this function in Node). */
  function plainAmount(text) {
    var value = String(text);
    return value.indexOf(".") < 0 ? value : value.replace(/0+$/, "").replace(/\.$/, "");
  }

  function notify(order) {
    var quote = (order.market || "").split("-")[1] || "";
    var text = "Order #" + order.id + " " + order.side + " " + plainAmount(order.quantity) + " " + order.market + " " + order.status;
    if (order.status_reason) text += " (" + reasonSentence(order.status_reason) + ")";
    if (/[1-9]/.test(order.filled_quantity)) {
      text += ": " + plainAmount(order.filled_quantity) + " at average " + order.average_price + ", fee " + plainAmount(order.fee_paid) + " " + quote;
    } else {
      text += ": nothing filled";
    }
    var toast = doc.createElement("p");
    toast.className = "toast " + (order.status === "filled" ? "toast-success" : "toast-info");
    toast.setAttribute("role", "status");
    toast.setAttribute("data-order-notice", order.id);
    toast.textContent = text;
    var box = doc.getElementById("toasts");
    if (box) box.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 10000);
  }

  function onOrder(order, snapshot) {
    var before = statuses[order.id];
    statuses[order.id] = order.status;
    if (snapshot || before === order.status) return;
    if (order.status === "filled" || order.status === "expired") notify(order);
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/ws/v1");
    socket.onopen = function () {
      sequences = {};
      socket.send(JSON.stringify({ op: "subscribe", channels: channels }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.op === "subscribed") {
        window.streamLive = true;
        retry = 500;
        refresh();  // whatever changed while the socket was being opened
        return;
      }
      if (!message.channel) return;
      var last = sequences[message.channel] || 0;
      sequences[message.channel] = message.sequence;
      if (message.type === "update" && message.sequence !== last + 1) {  // a lost message: a fresh snapshot
        socket.send(JSON.stringify({ op: "subscribe", channels: [message.channel] }));
      }
      if (message.channel === "orders") {
        (message.type === "snapshot" ? message.data : [message.data]).forEach(function (order) {
          onOrder(order, message.type === "snapshot");
        });
      }
      if (message.type === "update") refresh();
    };
    socket.onclose = function () {
      window.streamLive = false;  // the poll takes over until the socket is back
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  /* --- the trader's own resting orders, marked in the book (from the open-orders table,
         so it works whether the regions came by socket or by poll) --- */
  function markOwn() {
    var own = {};
    doc.querySelectorAll("[data-own-order]").forEach(function (row) {
      own[row.getAttribute("data-side") + "@" + row.getAttribute("data-price")] = true;
    });
    [["asks", "sell"], ["bids", "buy"]].forEach(function (pair) {
      doc.querySelectorAll(".book-side." + pair[0] + " .price-btn[data-price]").forEach(function (button) {
        var row = button.closest("tr");
        var mark = own[pair[1] + "@" + button.getAttribute("data-price")] === true;
        row.classList.toggle("own", mark);
        var marker = row.querySelector(".own-marker");
        if (mark && !marker) {
          marker = doc.createElement("span");
          marker.className = "own-marker";
          marker.title = "Your order";
          marker.textContent = "●";
          marker.setAttribute("aria-label", "your order");
          button.parentNode.insertBefore(marker, button);
        } else if (!mark && marker) {
          marker.remove();
        }
      });
    });
  }

  doc.addEventListener("htmx:afterSettle", markOwn);
  doc.addEventListener("htmx:oobAfterSwap", markOwn);
  markOwn();
  connect();
})();
