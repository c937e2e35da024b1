/**
 * What the person does: the page's forms, keys, clicks and window events, each bound to the
 * action that answers it. Bound once, by app.ts's main().
 */

import { isRoom } from "../src/protocol/wire.ts";
import type { Chat } from "./chat.ts";
import type { Connection } from "./connection.ts";
import type { Directory } from "./directory.ts";
import type { Ui } from "./elements.ts";
import { parseHash, slugOf } from "./hash.ts";
import type { Header } from "./header.ts";
import type { Mentions } from "./mentions.ts";
import type { Messages } from "./messages.ts";
import type { Moderation } from "./moderation.ts";
import type { Rooms } from "./rooms.ts";

/** How often the sidebar's room directory is refreshed while connected and visible. */
const ROOMS_REFRESH_MS = 15_000;

export interface InputDeps {
  ui: Ui;
  chat: Chat;
  rooms: Rooms;
  link: Connection;
  mentions: Mentions;
  directory: Directory;
  moderation: Moderation;
  messages: Messages;
  header: Header;
  /** Touch screens have no Shift+Enter: there Enter is a newline and the Send button sends. */
  touch: boolean;
}

export function bindInput({ ui, chat, rooms, link, mentions, directory, moderation, messages, header, touch }: InputDeps): void {
  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.loginName.value.trim();
    if (!name) {
      ui.loginError.textContent = "Enter a name.";
      ui.loginName.setAttribute("aria-invalid", "true");
      return ui.loginName.focus();
    }
    chat.signIn(name, ui.loginAdminToken.value.trim());
  });

  // A room typed as "My Room" or "#Design" is joined as my-room or design: said before joining.
  const joinPreview = () => {
    const typed = ui.joinRoom.value;
    const name = slugOf(typed);
    ui.joinSlug.textContent = name && name !== typed.trim() ? `Joins #${name}` : "";
    ui.joinError.textContent = "";
    ui.joinRoom.setAttribute("aria-invalid", "false");
  };
  ui.joinRoom.addEventListener("input", joinPreview);
  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = slugOf(ui.joinRoom.value);
    if (!isRoom(name)) {
      ui.joinError.textContent = "Use letters or digits: a room's name is up to 32 of a-z 0-9 _ -.";
      ui.joinRoom.setAttribute("aria-invalid", "true");
      return;
    }
    ui.joinRoom.value = "";
    joinPreview();
    rooms.open(name);
    ui.text.focus();
  });
  // Escape closes what is open, the innermost first: this form's text, the rename form, the admin
  // token field (menus, dialogs, the reply and an edit close by themselves; the drawer is last).
  ui.joinRoom.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !ui.joinRoom.value) return;
    event.stopPropagation();
    ui.joinRoom.value = "";
    joinPreview();
  });
  ui.renameForm.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation();
    chat.showRename(false);
    ui.renameButton.focus();
  });
  ui.loginAdmin.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !ui.loginAdmin.open) return;
    event.preventDefault();
    ui.loginAdmin.open = false;
    ui.loginAdmin.querySelector("summary")?.focus();
  });

  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.replyBar.hidden) {
      event.preventDefault();
      return messages.cancelReply();
    }
    // Enter sends; Shift+Enter falls through to the textarea's newline. An IME's Enter picks a word.
    // On a touch screen Enter is always a newline: the Send button sends.
    if (touch || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    chat.submit();
  });
  ui.text.addEventListener("input", () => {
    chat.updateCounter();
    chat.typed();
  });
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    chat.submit();
    ui.text.focus();
  });

  ui.pill.addEventListener("click", rooms.toBottom);
  ui.bannerRetry.addEventListener("click", () => link.retryNow());
  ui.renameButton.addEventListener("click", () => chat.showRename(ui.renameForm.hidden === true));
  ui.renameCancel.addEventListener("click", () => {
    chat.showRename(false);
    ui.renameButton.focus();
  });
  ui.renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    chat.rename();
  });
  ui.signOut.addEventListener("click", () => void chat.signOut());
  ui.adminSignIn.addEventListener("click", () => void chat.becomeAdmin());
  ui.members.addEventListener("click", (event) => {
    const button = (event.target as Element).closest<HTMLButtonElement>(".member-actions");
    if (button) moderation.openMenu(button);
  });
  messages.bind();
  header.bind();
  ui.notify.addEventListener("click", () => void mentions.toggle());
  ui.skip.addEventListener("click", () => ui.text.focus());
  ui.menuToggle.addEventListener("click", () => rooms.drawer(!ui.app.classList.contains("nav-open")));
  // A tap beside the open drawer (on the dimmed chat) closes it, and does nothing else.
  ui.main.addEventListener(
    "click",
    (event) => {
      if (!ui.app.classList.contains("nav-open")) return;
      event.preventDefault();
      event.stopPropagation();
      rooms.drawer(false);
    },
    { capture: true },
  );
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.app.classList.contains("nav-open")) {
      rooms.drawer(false);
      ui.menuToggle.focus();
    }
  });
  window.addEventListener("hashchange", () => {
    const hash = parseHash(location.hash);
    // The room first: opening it takes a ticket out of the address before anything else happens.
    rooms.goTo(hash);
    if (hash.token) chat.signInWithTicket(hash.token);
  });
  window.addEventListener("resize", rooms.keepBottom);
  document.addEventListener("visibilitychange", rooms.seen);
  window.setInterval(() => {
    if (link.ready && document.visibilityState === "visible") void directory.refresh();
  }, ROOMS_REFRESH_MS);
}
