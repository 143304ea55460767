/*
 * Every page: CSRF for HTMX, a reconnecting WebSocket helper, alert toasts.
 *
 * The CSRF token is read from the csrftoken cookie at the moment of each
 * request, not from the page: Django rotates it at login, so a page (or a
 * fragment loaded later) that outlived a logout and login would otherwise
 * send a stale token and get a 403.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("page-config").textContent);

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) return decodeURIComponent(item.slice(prefix.length));
    }
    return null;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return cookie("csrftoken") || (meta ? meta.content : "");
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  // A 403 or a login redirect means the session ended: go to the login page
  // instead of swapping the login form into a fragment.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.responseURL && new URL(xhr.responseURL).pathname === "/login/") {
      event.detail.shouldSwap = false;
      window.location.href = "/login/?next=" + encodeURIComponent(location.pathname);
    }
  });

  // HTMX leaves a refused request's fragment alone; say what happened.
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const text = (xhr.responseText || "").slice(0, 300);
    const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
    const hint = xhr.status === 403 ? "Refused (403): reload the page and try again." : "";
    const message = hint || (plain && text) || "The server answered " + xhr.status + ".";
    showToast("warning", message, null, "Request failed");
  });

  /**
   * A WebSocket that reconnects with exponential backoff (1 s doubling to
   * 30 s, with jitter so many tabs do not reconnect in step). Exactly one
   * socket is open at a time; close() stops it for good.
   */
  class LiveSocket {
    constructor(path, handlers) {
      this.path = path;
      this.onMessage = handlers.onMessage || function () {};
      this.onState = handlers.onState || function () {};
      this.attempts = 0;
      this.socket = null;
      this.timer = null;
      this.stopped = false;
      this.connect();
    }

    url() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      return scheme + location.host + this.path;
    }

    connect() {
      if (this.stopped) return;
      const socket = new WebSocket(this.url());
      this.socket = socket;
      this.onState("connecting");
      socket.onopen = () => {
        this.attempts = 0;
        this.onState("open");
      };
      socket.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        this.onMessage(message);
      };
      socket.onclose = () => {
        if (this.socket === socket) this.socket = null;
        this.onState("closed");
        this.schedule();
      };
    }

    schedule() {
      if (this.stopped || this.timer) return;
      const base = Math.min(30000, 1000 * Math.pow(2, this.attempts));
      const delay = base * (0.75 + Math.random() * 0.5);
      this.attempts += 1;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.connect();
      }, delay);
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.socket) this.socket.close();
    }
  }

  const SEVERITY_CLASS = {
    info: "text-bg-info",
    warning: "text-bg-warning",
    critical: "text-bg-danger",
    emergency: "text-bg-danger",
  };

  // Built with textContent only: alert messages are data, never markup.
  function showToast(level, text, when, heading) {
    const box = document.getElementById("toasts");
    if (!box || !window.bootstrap) return;
    const toast = document.createElement("div");
    toast.className = "toast border-0";
    toast.setAttribute("role", "alert");
    const header = document.createElement("div");
    header.className = "toast-header " + (SEVERITY_CLASS[level] || "text-bg-secondary");
    const title = document.createElement("strong");
    title.className = "me-auto text-capitalize";
    title.textContent = heading || (level || "alert") + " alert";
    const time = document.createElement("small");
    time.textContent = when ? formatTime(Date.parse(when)) : "";
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close ms-2";
    close.setAttribute("data-bs-dismiss", "toast");
    close.setAttribute("aria-label", "Close");
    header.append(title, time, close);
    const body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = text || "";
    toast.append(header, body);
    box.append(toast);
    const instance = new bootstrap.Toast(toast, { delay: 8000 });
    toast.addEventListener("hidden.bs.toast", () => {
      instance.dispose();
      toast.remove();
    });
    instance.show();
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
    timeZone: config.timeZone,
  });

  function formatTime(ms) {
    return Number.isFinite(ms) ? timeFormat.format(new Date(ms)) : "";
  }

  function onAlert(message) {
    if (!message || (message.type !== "alert" && message.type !== "alert_resolved")) return;
    if (message.type === "alert") showToast(message.level, message.message, message.timestamp);
    document.body.dispatchEvent(new CustomEvent("alerts-changed", { bubbles: true }));
  }

  window.cpusched = { config, LiveSocket, csrfToken, showToast, formatTime };

  if (config.authenticated && "WebSocket" in window) {
    window.cpusched.alertSocket = new LiveSocket(config.alertsSocket, { onMessage: onAlert });
  }
})();
