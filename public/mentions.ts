/**
 * Mention notifications, opt-in: a desktop notification when someone names the reader while this
 * tab is hidden, and the sidebar button that turns them on and off.
 */

import { shown } from "./dom.ts";
import type { Identity } from "./identity.ts";
import type { MessageFrame } from "../src/protocol/wire.ts";

/** Longest text of a desktop notification. */
const NOTIFY_CHARS = 200;

export type Mentions = ReturnType<typeof createMentions>;

/** `button` turns alerts on and off; a click on an alert calls `open` with its room. */
export function createMentions(button: HTMLButtonElement, identity: Identity, notice: (text: string) => void, open: (room: string) => void) {
  const on = () => "Notification" in window && Notification.permission === "granted" && identity.notify;

  function render(): void {
    button.hidden = !("Notification" in window);
    const enabled = on();
    button.setAttribute("aria-pressed", String(enabled));
    button.textContent = enabled ? "Mention alerts: on" : "Mention alerts: off";
  }

  /** Asks for permission only here, on a click: browsers ignore (and users resent) asking unprompted. */
  async function toggle(): Promise<void> {
    if (on()) {
      identity.notify = false;
      return render();
    }
    const permission = Notification.permission === "default" ? await Notification.requestPermission() : Notification.permission;
    if (permission === "granted") identity.notify = true;
    else notice("Notifications are blocked for this site in the browser's settings.");
    render();
  }

  /** A desktop notification for a mention, only while this tab is hidden. */
  function notify(room: string, m: MessageFrame): void {
    if (document.visibilityState !== "hidden" || !on()) return;
    try {
      // One tag per message: several tabs of this browser show it once.
      const n = new Notification(`${m.user.name} in #${room}`, { body: shown(m.text).slice(0, NOTIFY_CHARS), tag: `chat:${room}:${m.seq}` });
      n.addEventListener("click", () => {
        window.focus();
        open(room);
        n.close();
      });
    } catch {
      // Some browsers allow notifications only from a service worker: then there are none.
    }
  }

  return { render, toggle, notify };
}
