import type { LakefsClient } from "../lakefs/client.ts";
import type { Lane, LaneLag } from "./lane.ts";

/** Commits walked back from HEAD looking for the mirrored one before giving up. */
const LAG_SCAN_LIMIT = 1000;

/**
 * How far a lane is behind its branch: the commits from HEAD back to the commit the mirror
 * holds, and the age of the oldest of them. When that commit is not among HEAD's ancestors (a
 * hard reset, or a lane that never exported), the branch counts as one move behind, with no age
 * to report: a reset's time is not recorded anywhere in lakeFS.
 */
export async function measureLag(
  lakefs: LakefsClient,
  repository: string,
  mirrored: string | undefined,
  headCommit: string,
  signal?: AbortSignal,
): Promise<{ commitsBehind: number; lagSeconds: number }> {
  if (mirrored === headCommit) return { commitsBehind: 0, lagSeconds: 0 };
  let behind = 0;
  let oldest: number | undefined;
  if (mirrored) {
    for await (const page of lakefs.logCommits(repository, headCommit, signal)) {
      for (const c of page) {
        if (c.id === mirrored) {
          return {
            commitsBehind: behind,
            lagSeconds: Math.max(0, Date.now() / 1000 - (oldest ?? c.creation_date)),
          };
        }
        behind++;
        oldest = c.creation_date;
        if (behind >= LAG_SCAN_LIMIT)
          return { commitsBehind: behind, lagSeconds: Date.now() / 1000 - oldest };
      }
    }
  }
  return { commitsBehind: 1, lagSeconds: 0 };
}

/**
 * Brings a lane's lag up to date against `head`, whatever the lane is doing (queued behind
 * other lanes, in a long export, backing off): the commits from `head` back to `mirrored`, and
 * the age of the oldest of them. Where lakeFS's history cannot tell the age (the mirrored
 * commit is not an ancestor of HEAD, after a hard reset, or none is known yet), the lag counts
 * from when this daemon first saw the lane behind: at least that long, and growing, so that a
 * lane that never catches up still raises the lag alert.
 */
export async function observeLag(
  lakefs: LakefsClient,
  lane: Lane,
  mirrored: string | undefined,
  head: string,
  signal?: AbortSignal,
): Promise<{ commitsBehind: number; lagSeconds: number }> {
  const lag = await measureLag(lakefs, lane.repository, mirrored, head, signal);
  const l = lagOf(lane);
  l.headCommit = head;
  if (lag.commitsBehind === 0) {
    l.behindSince = undefined;
  } else {
    l.behindSince ??= new Date();
    if (lag.lagSeconds === 0) lag.lagSeconds = (Date.now() - l.behindSince.getTime()) / 1000;
  }
  l.commitsBehind = lag.commitsBehind;
  l.lagSeconds = lag.lagSeconds;
  return lag;
}

/** The branch's HEAD was read as `head`; how far behind that is gets measured by observeLag. */
export function sawHead(lane: Lane, head: string): void {
  lagOf(lane).headCommit = head;
}

/** The mirror was found to hold `head`, the branch's HEAD: nothing behind. */
export function caughtUp(lane: Lane, head: string): void {
  const l = lagOf(lane);
  l.headCommit = head;
  l.commitsBehind = 0;
  l.lagSeconds = 0;
  l.behindSince = undefined;
}

/** This module's own part of a lane, the one it writes (see lane.ts). */
function lagOf(lane: Lane): LaneLag {
  return lane;
}
