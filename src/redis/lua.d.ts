/** Lua scripts, imported as text (`with { type: "text" }`); the build embeds them. */
declare module "*.lua" {
  const source: string;
  export default source;
}
