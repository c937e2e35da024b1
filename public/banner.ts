/**
 * What the page says about itself: the connection's status (the dot, the banner with its reason,
 * a countdown to the next attempt and a retry button) and transient notices.
 */

import type { Status } from "./connection.ts";
import type { Ui } from "./elements.ts";

/** How long a transient notice stays up. */
const NOTICE_MS = 6_000;
/** How often the "reconnecting in N s" countdown is redrawn. */
const COUNTDOWN_TICK_MS = 1_000;

const STATUS_LABEL: Record<Status["state"], string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting",
  offline: "Offline",
};

export type Banner = ReturnType<typeof createBanner>;

/** `known`: whether we were welcomed on this page already; a first connect is quiet, a lost one is news. */
export function createBanner(ui: Ui, known: () => boolean) {
  let countdownTimer = 0;
  let noticeTimer = 0;

  function status(status: Status): void {
    ui.status.dataset.state = status.state;
    ui.statusText.textContent = STATUS_LABEL[status.state];
    window.clearInterval(countdownTimer);
    const note = status.state === "connected" ? "" : (status.note ?? defaultNote(status.state));
    // The first connect of a visit is quick and quiet; every later state change is announced.
    ui.banner.hidden = status.state === "connected" || (status.state === "connecting" && !known());
    ui.bannerText.textContent = note;
    ui.bannerRetry.hidden = !(status.state === "reconnecting" || (status.state === "offline" && status.canRetry));
    ui.bannerRetry.textContent = status.state === "offline" ? "Reconnect" : "Retry now";
    ui.loginStatus.textContent = status.state === "connecting" || status.state === "reconnecting" ? note : "";
    ui.bannerCountdown.textContent = "";
    // The delay of the retry under way, for tests of the backoff; absent when none is.
    if (status.state === "reconnecting") ui.status.dataset.retryMs = String(Math.round(status.delayMs));
    else delete ui.status.dataset.retryMs;
    if (status.state === "reconnecting") {
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((status.at - Date.now()) / 1000));
        ui.bannerCountdown.textContent = `Reconnecting in ${seconds} s.`;
      };
      tick();
      countdownTimer = window.setInterval(tick, COUNTDOWN_TICK_MS);
    }
  }

  /** Shows `text` for NOTICE_MS, replacing any notice up. */
  function notice(text: string): void {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    window.clearTimeout(noticeTimer);
    noticeTimer = window.setTimeout(() => (ui.notice.hidden = true), NOTICE_MS);
  }

  /** What the banner says when the connection gives no reason of its own. */
  function defaultNote(kind: Status["state"]): string {
    if (kind === "connecting") return "Connecting to the chat…";
    if (kind === "reconnecting") return known() ? "Connection lost." : "Cannot reach the chat server.";
    return kind === "offline" ? "Offline." : "";
  }

  return { status, notice };
}

