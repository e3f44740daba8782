// A background pass that many triggers share.

/**
 * Runs `fn` (which handles its own errors) when triggered, never two at once; triggers
 * during a run cause one more run. `idle()` resolves when no run is in flight.
 */
export function coalesced(fn: () => Promise<void>) {
  let current: Promise<void> | undefined;
  let again = false;
  const trigger = (): void => {
    if (current) {
      again = true;
      return;
    }
    current = fn().finally(() => {
      current = undefined;
      if (again) {
        again = false;
        trigger();
      }
    });
  };
  return { trigger, running: () => current !== undefined, idle: () => current ?? Promise.resolve() };
}
