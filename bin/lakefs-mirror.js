#!/usr/bin/env node
// The installed command: the compiled entry (npm ci and npm run build write dist/).
import "../dist/cli/bin.js";
