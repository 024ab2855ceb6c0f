//! Page-number pagination, the seed's way: `page` (default 1) and `page_size` (default 20, at most
//! 100; larger values are capped, not refused).

use crate::error::{ErrorKind, Problem};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    /// Validates the raw parameters: 0 is refused (400); sizes above the maximum are capped.
    pub fn new(page: Option<u32>, page_size: Option<u32>) -> Result<Self, Problem> {
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(Problem::invalid_field("page", "page numbers start at 1"));
        }
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 {
            return Err(Problem::invalid_field("page_size", "page_size must be at least 1"));
        }
        Ok(PageRequest { page, page_size: page_size.min(MAX_PAGE_SIZE) })
    }

    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.page_size)
    }

    /// Neighbouring pages for a result of `count` rows. A page past the last one is a 404, as in
    /// Django REST framework; page 1 of an empty result is an empty page.
    pub fn info(&self, count: i64) -> Result<PageInfo, Problem> {
        let size = i64::from(self.page_size);
        let last = ((count + size - 1) / size).max(1);
        if i64::from(self.page) > last {
            return Err(Problem::new(
                ErrorKind::NotFound,
                "Invalid page",
                format!("Page {} is past the last page ({last})", self.page),
            ));
        }
        Ok(PageInfo {
            count,
            next_page: (i64::from(self.page) < last).then_some(self.page + 1),
            previous_page: (self.page > 1).then(|| self.page - 1),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    pub count: i64,
    pub next_page: Option<u32>,
    pub previous_page: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_caps_and_refusals() {
        assert_eq!(PageRequest::new(None, None).unwrap(), PageRequest { page: 1, page_size: 20 });
        assert_eq!(PageRequest::new(Some(2), Some(500)).unwrap().page_size, 100);
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
    }

    #[test]
    fn neighbours_and_edges() {
        let p = PageRequest::new(Some(2), Some(10)).unwrap();
        assert_eq!(p.offset(), 10);
        let info = p.info(25).unwrap();
        assert_eq!((info.previous_page, info.next_page), (Some(1), Some(3)));
        let last = PageRequest::new(Some(3), Some(10)).unwrap().info(30).unwrap();
        assert_eq!((last.previous_page, last.next_page), (Some(2), None));
        assert_eq!(PageRequest::new(Some(4), Some(10)).unwrap().info(30).unwrap_err().kind, ErrorKind::NotFound);
        let empty = PageRequest::new(None, None).unwrap().info(0).unwrap();
        assert_eq!((empty.previous_page, empty.next_page), (None, None));
    }
}
