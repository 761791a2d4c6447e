//! Integration and end-to-end tests: the real AWS SDK against moto (started by `infra/local/test.sh`),
//! channel simulators on loopback. One binary, one module per capability.

mod awsproxy;
mod fixtures;
mod support;

mod changes;
mod config;
mod console;
mod content;
mod customers;
mod deadlines;
mod emulator;
mod exports;
mod iam;
mod inbound;
mod ledger;
mod listings;
mod matrix;
mod ops;
mod otto;
mod outbound;
mod pipeline;
mod ports;
mod push;
mod records;
mod recovery;
mod returns;
mod rules;
mod startup;
mod storm;
mod sweeps;
mod sync;
mod template;
mod tokens;
mod webhooks;
