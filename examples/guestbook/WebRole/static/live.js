// While a thumbnail is on its way (the page includes this script only then), fetch the page
// again every few seconds and put its entries in place of these. The form is left alone, so
// whatever the visitor is typing stays. Stops once the fetched page no longer includes this
// script: nothing is pending any more.
(function () {
  "use strict";
  var me = document.currentScript;
  var delay = 1000 * Number((me && me.dataset.seconds) || 5);

  function again() {
    setTimeout(update, delay);
  }

  function update() {
    fetch("/", { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var entries = fresh.getElementById("entries");
        var here = document.getElementById("entries");
        if (entries && here) here.replaceWith(document.importNode(entries, true));
        if (fresh.querySelector('script[src="/static/live.js"]')) again();
      })
      .catch(again); // storage away, an instance restarting: try again later
  }

  again();
})();
