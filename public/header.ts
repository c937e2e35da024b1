/**
 * The room shown, in the top bar: its topic, a lock when it is private, "read-only" and slow mode;
 * for its moderators and owner, the "Invite link" button (an invite code made by the server,
 * shared as `/#room?invite=CODE`) and the settings dialog (topic for moderators; private,
 * read-only and slow mode for the owner and admins). Both are native modal dialogs.
 */

import { DEFAULT_SETTINGS, type ErrorFrame, type InviteFrame, type RoomSettings } from "../src/protocol/wire.ts";
import type { Connection } from "./connection.ts";
import { h, untilText } from "./dom.ts";
import type { Ui } from "./elements.ts";
import { duration } from "./events.ts";
import type { Self } from "./identity.ts";
import { mayInvite, maySettings, mayTopic, rankOf } from "./rights.ts";
import type { Room } from "./room.ts";
import type { Rooms } from "./rooms.ts";
import { refFor } from "./sync.ts";

export interface HeaderDeps {
  ui: Ui;
  rooms: Rooms;
  link: Connection;
  self: Self;
  notice(text: string): void;
}

export type Header = ReturnType<typeof createHeader>;

export function createHeader(deps: HeaderDeps) {
  const { ui, rooms, link, self } = deps;
  /** The room the open settings dialog is about. */
  let editing: Room | null = null;
  /**
   * Its settings as the dialog opened: a save sends only what the form changed from these, so a
   * change someone else made meanwhile stands (the server changes only the fields sent).
   */
  let opened: RoomSettings = { ...DEFAULT_SETTINGS };
  /** The room whose invite link was asked for, and the ref of that request. */
  let inviting: { room: string; ref: string } | null = null;

  /** Draws the top bar for the room shown. */
  function draw(room: Room): void {
    const { topic, private: locked, readOnly, slowModeSeconds } = room.settings;
    ui.roomTopic.textContent = topic;
    ui.roomTopic.hidden = !topic;
    ui.roomTopic.title = topic;
    ui.roomLock.hidden = !locked;
    const flags = [readOnly && "read-only", slowModeSeconds > 0 && `slow mode ${duration(slowModeSeconds)}`].filter(Boolean).join(" · ");
    ui.roomFlags.textContent = flags;
    const rank = rankOf(room.role, self.admin);
    const inside = room.out === null;
    ui.roomInvite.hidden = !(inside && mayInvite(rank));
    ui.roomSettings.hidden = !(inside && mayTopic(rank));
  }

  // ─── Settings ──────────────────────────────────────────────────────────────────────────────

  function openSettings(): void {
    const room = rooms.currentRoom();
    if (!room) return;
    editing = room;
    const s = (opened = { ...room.settings });
    const owner = maySettings(rankOf(room.role, self.admin));
    ui.settingsTitle.textContent = `Settings of #${room.name}`;
    ui.settingsTopic.value = s.topic;
    ui.settingsPrivate.checked = s.private;
    ui.settingsReadOnly.checked = s.readOnly;
    slowOption(s.slowModeSeconds);
    ui.settingsSlow.value = String(s.slowModeSeconds);
    ui.settingsOwner.disabled = !owner;
    ui.settingsOwnerHint.hidden = owner;
    ui.settingsError.textContent = "";
    ui.settingsSave.disabled = false;
    ui.settingsDialog.showModal();
    ui.settingsTopic.focus();
  }

  /** A slow mode the list does not offer (set by a bot, say) is added to it, so it shows as it is. */
  function slowOption(seconds: number): void {
    if ([...ui.settingsSlow.options].some((o) => o.value === String(seconds))) return;
    ui.settingsSlow.append(h("option", { text: `One message per ${duration(seconds)}`, attrs: { value: String(seconds) } }));
  }

  /** Sends what the form changed; the dialog closes when the server says it is done. */
  function saveSettings(): void {
    const room = editing;
    if (!room) return;
    const s = opened;
    const changes: Partial<RoomSettings> = {};
    const topic = ui.settingsTopic.value.replace(/\s+/g, " ").trim();
    if (topic !== s.topic) changes.topic = topic;
    if (!ui.settingsOwner.disabled) {
      if (ui.settingsPrivate.checked !== s.private) changes.private = ui.settingsPrivate.checked;
      if (ui.settingsReadOnly.checked !== s.readOnly) changes.readOnly = ui.settingsReadOnly.checked;
      const slow = Number(ui.settingsSlow.value);
      if (slow !== s.slowModeSeconds) changes.slowModeSeconds = slow;
    }
    if (Object.keys(changes).length === 0) return ui.settingsDialog.close();
    if (!link.send({ type: "room_settings", room: room.name, ...changes, ref: refFor("settings", room.name) })) {
      ui.settingsError.textContent = "Not connected: try again once the chat is back.";
      return;
    }
    ui.settingsError.textContent = "";
    ui.settingsSave.disabled = true;
  }

  /** The server stored the settings (its `settings` event redraws the room). */
  function settingsSaved(room: string): void {
    if (editing?.name === room && ui.settingsDialog.open) ui.settingsDialog.close();
  }

  function settingsRefused(room: string, f: ErrorFrame): void {
    if (editing?.name !== room || !ui.settingsDialog.open) return deps.notice(`Settings not saved: ${f.message}.`);
    ui.settingsSave.disabled = false;
    ui.settingsError.textContent = `Not saved: ${f.message}.`;
  }

  /** The connection is gone with the answer to a save or an invite still to come: the dialog says so, and can be used again. */
  function lost(): void {
    if (ui.settingsDialog.open && ui.settingsSave.disabled) {
      ui.settingsSave.disabled = false;
      ui.settingsError.textContent = "Not saved: the connection was lost. Save again once the chat is back.";
    }
    if (ui.inviteDialog.open && ui.inviteLink.hidden) ui.inviteStatus.textContent = "No invite link: the connection was lost. Try again once the chat is back.";
  }

  // ─── Invite links ──────────────────────────────────────────────────────────────────────────

  function openInvite(): void {
    const room = rooms.currentRoom();
    if (!room) return;
    const ref = refFor("invite", room.name);
    inviting = { room: room.name, ref };
    ui.inviteLink.hidden = ui.inviteCopy.hidden = true;
    ui.inviteLink.value = "";
    ui.inviteStatus.textContent = link.send({ type: "invite", room: room.name, ref }) ? "Making an invite link…" : "Not connected: try again once the chat is back.";
    ui.inviteDialog.showModal();
    ui.inviteClose.focus();
  }

  function inviteArrived(f: InviteFrame): void {
    if (!inviting || f.ref !== inviting.ref || !ui.inviteDialog.open) return;
    const url = new URL(`#${f.room}?invite=${encodeURIComponent(f.code)}`, location.href).href;
    const uses = f.maxUses === null ? "" : ` (${f.maxUses} ${f.maxUses === 1 ? "use" : "uses"})`;
    ui.inviteStatus.textContent = `Anyone with this link can join #${f.room} until ${untilText(f.expiresAt)}${uses}. Opening it joins the room.`;
    ui.inviteLink.value = url;
    ui.inviteLink.hidden = false;
    ui.inviteCopy.hidden = !navigator.clipboard;
    ui.inviteCopy.textContent = "Copy link";
    ui.inviteLink.focus();
    ui.inviteLink.select();
  }

  function inviteRefused(room: string, f: ErrorFrame): void {
    if (inviting?.room === room && ui.inviteDialog.open) ui.inviteStatus.textContent = `No invite link: ${f.message}.`;
  }

  function bind(): void {
    ui.roomSettings.addEventListener("click", openSettings);
    ui.settingsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      saveSettings();
    });
    ui.settingsCancel.addEventListener("click", () => ui.settingsDialog.close());
    ui.settingsDialog.addEventListener("close", () => {
      editing = null;
      ui.roomSettings.focus();
    });
    ui.roomInvite.addEventListener("click", openInvite);
    ui.inviteClose.addEventListener("click", () => ui.inviteDialog.close());
    ui.inviteDialog.addEventListener("close", () => {
      inviting = null;
      ui.roomInvite.focus();
    });
    ui.inviteCopy.addEventListener("click", () => {
      navigator.clipboard.writeText(ui.inviteLink.value).then(
        () => (ui.inviteCopy.textContent = "Copied"),
        () => (ui.inviteStatus.textContent = "Could not copy: select the link and copy it by hand."),
      );
    });
  }

  return { draw, bind, settingsSaved, settingsRefused, inviteArrived, inviteRefused, lost };
}
