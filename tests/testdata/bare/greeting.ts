export const greeting = "hello through a bare specifier";
