// A main program for pool tests that watch a whole program's life: what it
// prints, and when it ends. Usage: pool_main.ts <mode> <startMethod>
import { Pool, type StartMethod } from "../../mod.ts";
import { slowDouble } from "./pool_targets.ts";

const [mode, startMethod] = Deno.args as [string, StartMethod];

if (mode === "callback") {
  // Nothing is awaited: the pool alone keeps the program alive until the
  // callback has run.
  const pool = new Pool({ processes: 1, startMethod });
  pool.applyAsync(slowDouble, [21], { callback: (value) => console.log(`result ${value}`) });
} else if (mode === "idle") {
  // The program ends while the pool's worker may still be starting.
  new Pool({ processes: 1, startMethod });
  console.log("main done");
}
