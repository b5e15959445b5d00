#!/usr/bin/env node
// The installed command runs the compiled CLI (npm ci and npm run build write dist/).
import process from "node:process";
import { main } from "../dist/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
