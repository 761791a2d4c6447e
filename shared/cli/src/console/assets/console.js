// Progressive enhancement only: sections marked data-live="N" are re-read every N seconds while
// the tab is visible, by fetching the page again and swapping the section in. Without JavaScript
// the pages are complete; reload to refresh.
(function () {
  "use strict";
  document.querySelectorAll("[data-live][id]").forEach(function (section) {
    var seconds = Math.max(5, parseInt(section.getAttribute("data-live"), 10) || 15);
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(section.id);
          if (!fresh) { return Promise.reject("no section"); }
          section.replaceWith(fresh);
          section = fresh;
        })
        .catch(function () {
          // Keep what is shown, but say it is old; the next round tries again.
          if (!section.classList.contains("stale")) {
            section.classList.add("stale");
            section.setAttribute("data-stale-since", new Date().toISOString().slice(11, 19) + " UTC");
          }
        });
    }, seconds * 1000);
  });
})();
