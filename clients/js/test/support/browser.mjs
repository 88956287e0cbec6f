// Headless Chromium (Debian's, /usr/bin/chromium) through playwright-core.
// scripts/install-chromium.sh installs it; without it the browser tests fail
// with that instruction rather than pass without running.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** A headless browser with a fresh profile; `close()` removes it. */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run scripts/install-chromium.sh (as root), or set CHROMIUM_PATH`);
  }
  const profile = mkdtempSync(path.join(tmpdir(), 'fanout-chromium-'));
  // playwright passes --user-data-dir itself, from this argument.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async page() {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e));
      page.on('console', (m) => {
        // Chromium logs each refused WebSocket attempt; those are expected
        // while a test keeps the server away.
        if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) {
          errors.push(new Error(m.text()));
        }
      });
      return { page, errors };
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
