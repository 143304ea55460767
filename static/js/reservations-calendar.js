/*
 * The month calendar of reservation slots (FullCalendar, served locally).
 *
 * The calendar runs in its "UTC" mode and the server sends every time as a
 * naive wall-clock string in the operator's zone, so what is shown is the
 * server's local time whatever the browser's zone, and a drag's delta is a
 * wall-clock delta (one day is one calendar day, also across a
 * daylight-saving change). Moves are POSTed with the CSRF token; a refused
 * move is reverted and the server's reason shown.
 */
(function () {
  "use strict";

  const el = document.getElementById("reservation-calendar");
  if (!el || !window.FullCalendar) return;
  const box = document.getElementById("calendar-message");

  function say(kind, text) {
    box.className = "alert py-2 small alert-" + kind;
    box.textContent = text;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function wallDate(date) {
    // Dates are UTC-coerced: their UTC fields are the server's wall clock.
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate());
  }

  async function move(info, startDeltaMs, endDeltaMs) {
    const id = info.event.extendedProps.reservation;
    const url = el.dataset.moveUrlTemplate.replace("RESERVATION", id);
    let answer = { ok: false, message: "No answer from the server" };
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": window.cpusched.csrfToken() },
        body: JSON.stringify({ start_delta_ms: startDeltaMs, end_delta_ms: endDeltaMs }),
        credentials: "same-origin",
      });
      answer = await response.json().catch(() => ({ ok: false, message: "HTTP " + response.status }));
    } catch (err) {
      answer = { ok: false, message: String(err) };
    }
    if (!answer.ok) {
      info.revert();
      say("danger", "Not moved: " + answer.message);
      return;
    }
    const notes = (answer.notices || []).join(" ");
    say(notes ? "warning" : "success", "Moved " + info.event.title + "." + (notes ? " " + notes : ""));
    calendar.refetchEvents();
  }

  const calendar = new FullCalendar.Calendar(el, {
    timeZone: "UTC",
    initialView: "dayGridMonth",
    firstDay: 1,
    height: "auto",
    nowIndicator: true,
    headerToolbar: { left: "prev,next today", center: "title", right: "dayGridMonth,timeGridWeek,listMonth" },
    eventTimeFormat: { hour: "2-digit", minute: "2-digit", hour12: false },
    slotLabelFormat: { hour: "2-digit", minute: "2-digit", hour12: false },
    displayEventEnd: true,
    events: el.dataset.eventsUrl,
    editable: true,
    eventStartEditable: true,
    eventDurationEditable: true,
    dayMaxEvents: 6,
    eventDisplay: "block",
    dateClick: function (info) {
      const day = wallDate(info.date);
      const time = info.allDay ? "" : "T" + pad(info.date.getUTCHours()) + ":" + pad(info.date.getUTCMinutes());
      window.location.href = el.dataset.createUrl + "?start=" + day + time;
    },
    eventClick: function (info) {
      info.jsEvent.preventDefault();
      window.location.href = info.event.extendedProps.edit_url;
    },
    eventDidMount: function (info) {
      const note = info.event.extendedProps.note;
      info.el.title = info.event.title + (note ? " — " + note : "");
      info.el.dataset.reservation = info.event.extendedProps.reservation;
    },
    eventDrop: function (info) {
      const delta = info.delta.days * 86400000 + info.delta.milliseconds;
      move(info, delta, delta);
    },
    eventResize: function (info) {
      const startDelta = info.startDelta.days * 86400000 + info.startDelta.milliseconds;
      const endDelta = info.endDelta.days * 86400000 + info.endDelta.milliseconds;
      move(info, startDelta, endDelta);
    },
  });
  calendar.render();
  window.cpusched.reservationCalendar = calendar;
})();
