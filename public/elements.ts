/** The elements of index.html the page drives, looked up once when the page starts. */

import { byId } from "./dom.ts";

export type Ui = ReturnType<typeof findElements>;

/** Throws if index.html lacks one: a bug in the page, better found at once. */
export function findElements() {
  return {
    login: byId("login"),
    loginForm: byId<HTMLFormElement>("login-form"),
    loginName: byId<HTMLInputElement>("login-name"),
    loginError: byId("login-error"),
    loginSubmit: byId<HTMLButtonElement>("login-submit"),
    loginStatus: byId("login-status"),
    app: byId("app"),
    main: byId("main"),
    menuToggle: byId<HTMLButtonElement>("menu-toggle"),
    sidebar: byId("sidebar"),
    myRooms: byId("my-rooms"),
    joinForm: byId<HTMLFormElement>("join-form"),
    joinRoom: byId<HTMLInputElement>("join-room"),
    joinError: byId("join-error"),
    directory: byId("directory"),
    membersTitle: byId("members-title"),
    members: byId("members"),
    meName: byId("me-name"),
    renameButton: byId<HTMLButtonElement>("rename"),
    renameForm: byId<HTMLFormElement>("rename-form"),
    renameName: byId<HTMLInputElement>("rename-name"),
    renameError: byId("rename-error"),
    renameCancel: byId<HTMLButtonElement>("rename-cancel"),
    signOut: byId<HTMLButtonElement>("sign-out"),
    notify: byId<HTMLButtonElement>("notify"),
    skip: byId<HTMLButtonElement>("skip"),
    composerHint: byId("composer-hint"),
    roomTitle: byId("room-title"),
    roomMembers: byId("room-members"),
    status: byId("status"),
    statusText: byId("status-text"),
    banner: byId("banner"),
    bannerText: byId("banner-text"),
    bannerCountdown: byId("banner-countdown"),
    bannerRetry: byId<HTMLButtonElement>("banner-retry"),
    rooms: byId("rooms"),
    pill: byId<HTMLButtonElement>("new-pill"),
    notice: byId("notice"),
    typing: byId("typing"),
    composer: byId<HTMLFormElement>("composer"),
    composerLabel: byId("composer-label"),
    text: byId<HTMLTextAreaElement>("composer-text"),
    counter: byId("counter"),
    send: byId<HTMLButtonElement>("send"),
  };
}
