import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import { TaskPool } from "../../../src/export/pool.ts";

describe("TaskPool", () => {
  it("never runs more than its limit at once and makes submit wait for a slot", async () => {
    const pool = new TaskPool(3);
    let running = 0;
    let peak = 0;
    let done = 0;
    for (let i = 0; i < 20; i++) {
      await pool.submit(async () => {
        running++;
        peak = Math.max(peak, running);
        await tick();
        running--;
        done++;
      });
      assert.ok(pool.running <= 3);
    }
    await pool.drain();
    assert.equal(peak, 3);
    assert.equal(done, 20);
    assert.equal(pool.running, 0);
  });

  it("refuses a limit below one", () => {
    assert.throws(() => new TaskPool(0), TypeError);
  });
});
