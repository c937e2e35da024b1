/**
 * The sign-in screen and what the page says about who you are: whether this server takes guests
 * (`GET /api/info`; with guests off the screen says the site takes members only, who come with
 * their app's link), the optional admin token (used for one hello, never stored), the tags beside
 * your name (member, bot, admin), and the question before signing out.
 */

import type { UserRef } from "../src/protocol/wire.ts";
import { h } from "./dom.ts";
import type { Ui } from "./elements.ts";
import type { Fetch } from "./directory.ts";
import type { Ask } from "./menu.ts";

/** What `GET /api/info` says of the server, and what the page assumes until it has said it. */
export interface ServerInfo {
  guests: boolean;
  members: boolean;
  roomCreation: "anyone" | "members" | "admins";
}

const ASSUMED: ServerInfo = { guests: true, members: false, roomCreation: "anyone" };

/** The fields of an `/api/info` body the page understands; anything else keeps what is assumed. */
export function readInfo(body: unknown): ServerInfo {
  const b = (body ?? {}) as Partial<Record<keyof ServerInfo, unknown>>;
  return {
    guests: typeof b.guests === "boolean" ? b.guests : ASSUMED.guests,
    members: typeof b.members === "boolean" ? b.members : ASSUMED.members,
    roomCreation: b.roomCreation === "members" || b.roomCreation === "admins" ? b.roomCreation : ASSUMED.roomCreation,
  };
}

export type SignIn = ReturnType<typeof createSignIn>;

export function createSignIn(ui: Ui, fetch: Fetch, ask: Ask) {
  let info = ASSUMED;

  /** Asks the server what it takes; the screen follows. A failed request keeps the guest screen (a hello will tell). */
  async function load(): Promise<void> {
    try {
      const response = await fetch("/api/info");
      if (response.ok) info = readInfo(await response.json());
    } catch {
      // The connection status tells about a dead server.
    }
    drawMode();
  }

  /** The server refused a guest's hello (`auth_required`): members only, whatever it said before. */
  function membersOnly(): void {
    info = { ...info, guests: false };
    drawMode();
  }

  function drawMode(): void {
    ui.loginMembers.hidden = info.guests;
    ui.loginApp.hidden = !(info.guests && info.members);
    ui.loginLead.hidden = ui.loginGuest.hidden = ui.loginSubmit.hidden = !info.guests;
  }

  /** The sign-in screen, with `name` filled in and `error` beside it. */
  function show(name: string, error = ""): void {
    drawMode();
    ui.app.hidden = true;
    ui.login.hidden = false;
    ui.loginName.value = name;
    ui.loginError.textContent = error;
    ui.loginName.setAttribute("aria-invalid", String(Boolean(error)));
    ui.loginSubmit.disabled = false;
    ui.loginAdminToken.value = "";
    ui.loginAdminToken.setAttribute("aria-invalid", "false");
    if (info.guests) {
      ui.loginName.focus();
      ui.loginName.select();
    }
  }

  /** The admin token given was refused: say so by its field. */
  function adminRefused(why: string): void {
    ui.loginAdmin.open = true;
    ui.loginAdminToken.setAttribute("aria-invalid", "true");
    ui.loginError.textContent = why;
    ui.loginAdminToken.focus();
  }

  /** Who we are, beside our name: member or bot, and admin. The join field says whether we may start rooms. */
  function drawMe(me: UserRef, admin: boolean): void {
    const tags = [me.kind, admin && "admin"].filter((t): t is string => Boolean(t));
    ui.meTags.replaceChildren(...tags.map((t) => h("span", { class: `tag ${t}`, text: t })));
    const creates = info.roomCreation === "anyone" || admin || (info.roomCreation === "members" && me.kind !== undefined);
    ui.joinLabel.textContent = creates ? "Join or create a room" : "Join a room";
  }

  /** Asks before signing out, saying what it means: a guest's name becomes free for others. */
  async function confirmSignOut(me: UserRef | null, online: boolean): Promise<boolean> {
    const guest = me !== null && me.kind === undefined;
    const name = me ? `“${me.name}”` : "your name";
    const text = !guest
      ? "This browser forgets you, in every tab. The link from your app signs you in again."
      : online
        ? `Your name ${name} will be free for others to take. This browser forgets it, in every tab.`
        : `You are offline, so the server cannot be told now: your name ${name} stays taken until your session expires. This browser forgets it, in every tab.`;
    return (await ask({ title: "Sign out?", text, ok: "Sign out" })) !== null;
  }

  return { load, membersOnly, show, adminRefused, drawMe, confirmSignOut, get guests() { return info.guests; } };
}
