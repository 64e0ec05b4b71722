//! The first screen of a first sync ([`FirstScreen`]): before the bulk of a
//! table, one request for the rows the app is about to show (the pull's own
//! filter, the app's order, live rows only, with the server's count), applied
//! without moving the cursor. The bulk that follows reads the whole query from
//! no cursor, as an ordinary first pull does, and applies those rows again, so
//! the end state is the same as without a first screen.

use tidesync_protocol::odata::Query;

use crate::error::Result;
use crate::events::ChangeEvent;
use crate::outcome::FirstScreen;
use crate::transport::ReadRequest;

use super::{PullRun, page, read};

impl PullRun {
    /// Reads and applies the first screen; keeps the server's count as the
    /// progress total.
    pub(super) async fn read_first_screen(&mut self, screen: FirstScreen) -> Result<()> {
        let request = ReadRequest {
            table: self.table.clone(),
            query: Query {
                filter: self.query.filter.clone(),
                order_by: screen.order_by,
                top: Some(screen.rows.max(1)),
                count: true,
                ..Query::default()
            },
            include_deleted: false,
        };
        self.result.requests += 1;
        let (_, page) = read(&self.engine, &self.cancel, request).await?;
        self.progress.set_total(page.count);
        if page.items.is_empty() {
            return Ok(());
        }
        // No cursor key: these rows are not in cursor order, the bulk reads them again.
        let applied = page::apply_page(
            self.engine.clone(),
            self.table.clone(),
            None,
            None,
            page.items,
        )
        .await?;
        self.engine.emit(ChangeEvent::Pulled {
            table: self.table.clone(),
            upserted: applied.upserted,
            deleted: applied.deleted,
        });
        self.result.first_screen += applied.upserted;
        tracing::info!(
            table = %self.table,
            rows = applied.upserted,
            total = self.progress.total(),
            "first screen applied"
        );
        Ok(())
    }
}
