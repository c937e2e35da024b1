/**
 * Where the Redis engine keeps things, and how messages and events are written there. Room
 * names match ROOM_PATTERN, so these keys hold no separator of their own.
 */
import type { NewMessage, RoomEvent } from "../engine.ts";
import type { MessageFrame } from "../protocol/wire.ts";

/** A room's history and the channel it is published on. */
export const roomKeys = (room: string) => ({
  /** The room's seq counter: never decreases, so a seq is never reused. */
  seq: `chat:room:${room}:seq`,
  /** A sorted set scored by seq, members "seq:json" (encodeMember). */
  log: `chat:room:${room}:log`,
  /** "userId\nclientId" → seq: the dedup keys, dropped with the message each points at. */
  ids: `chat:room:${room}:ids`,
  /** Messages (and presence and typing events) of the room, for every instance. */
  channel: `chat:room:${room}`,
});

/** Where presence lives: per room, who is here on which instance and how many instances each user is on. */
export const rosterKeys = (room: string) => ({
  /** "instanceId|userId" → 1: a user's membership through one instance. */
  here: `chat:room:${room}:here`,
  /** userId → the number of instances it is a member through. */
  users: `chat:room:${room}:users`,
  /** userId → its name, while it is a member. */
  names: `chat:room:${room}:names`,
});

export const instanceKeys = (id: string) => ({
  /** Exists while the instance is alive (it sets it again every third of INSTANCE_TIMEOUT_MS). */
  alive: `chat:instance:${id}`,
  /** room → how many of the room's members are here through it: what a survivor takes over. */
  rooms: `chat:instance:${id}:rooms`,
  /** The survivor taking it over, for INSTANCE_TIMEOUT_MS; another may finish once that lapses. */
  takeover: `chat:instance:${id}:takeover`,
});

/** The room directory: rooms scored by their latest message's time. */
export const RECENT_KEY = "chat:recent";
/**
 * The rooms that hold history (MAX_ROOMS counts them: ZCARD), scored by their oldest retained
 * message's time (HISTORY_MAX_AGE_DAYS finds the aged ones: ZRANGEBYSCORE). Only the scripts
 * move it, in the same step as the history, so it is right on every instance and, with AOF,
 * after a restart.
 */
export const HELD_KEY = "chat:held";
/** Every instance that registered and was not taken over yet. */
export const INSTANCES_KEY = "chat:instances";
/** room → its distinct members on every instance (for /api/rooms). */
export const ACTIVE_KEY = "chat:active";

export const sessionKey = (tokenHash: string) => `chat:session:${tokenHash}`;
/** A name held, by its nameKey: instanceId → userId. */
export const nameKey = (key: string) => `chat:name:${key}`;
/** An address's hello bucket. */
export const helloKey = (ip: string) => `chat:hello:${ip}`;
/** A user's frame bucket; not at `chat:bucket:`, where older instances keep a string (a rolling deploy runs both). */
export const rateKey = (userId: string) => `chat:rate:${userId}`;

/** A stored message as Redis holds and publishes it: `seq:json`, the JSON without the seq. */
export function encodeMember(m: NewMessage): string {
  return JSON.stringify({ room: m.room, id: m.id, user: { id: m.user.id, name: m.user.name }, text: m.text, ts: m.ts });
}

export function decodeMember(member: string): MessageFrame {
  const at = member.indexOf(":");
  const m = JSON.parse(member.slice(at + 1));
  return { type: "message", room: m.room, seq: Number(member.slice(0, at)), id: m.id, user: { id: m.user.id, name: m.user.name }, text: m.text, ts: m.ts };
}

/** The JSON a room event crosses instances as; messages are `seq:json`, so a `{` tells them apart. */
export function encodeEvent(instance: string, event: RoomEvent): string {
  return JSON.stringify({ instance, ...event });
}
