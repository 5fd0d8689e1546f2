import { Process } from "../../mod.ts";

function hidden(): void {}

export function makeHidden(): Process {
  return new Process({ target: hidden });
}
