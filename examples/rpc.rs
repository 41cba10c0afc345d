//! RPC: the host registers handlers by method name; a client calls them with
//! typed arguments, decodes typed results, and tells application errors apart
//! by their codes.
//!
//! Run with: cargo run --example rpc

use sacred_client::{Client, Value};
use sacred_examples::serve_locally;
use sacred_server::{Hub, RpcError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Question {
    city: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Weather {
    city: String,
    celsius: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().rpc("weather.get", |ctx, data: Value| async move {
        let question: Question = data
            .decode()
            .map_err(|err| RpcError::new(422, format!("bad question: {err}")))?;
        println!(
            "host: {} asks about {}",
            ctx.caller.info.name, question.city
        );
        let celsius = match question.city.as_str() {
            "Lyon" => 21.5,
            "Oslo" => -3.0,
            _ => {
                return Err(RpcError::new(
                    404,
                    format!("no such city: {}", question.city),
                ));
            }
        };
        let answer = Weather {
            city: question.city,
            celsius,
        };
        sacred_server::to_value(&answer).map_err(|err| RpcError::new(500, err.to_string()))
    });
    let (url, _hub) = serve_locally(hub).await?;

    let client = Client::builder(&url)
        .name("forecaster")
        .kind("agent")
        .connect()
        .await?;
    for city in ["Lyon", "Oslo", "Atlantis"] {
        let question = Question { city: city.into() };
        match client.rpc("weather.get", &question).await {
            Ok(answer) => {
                let weather: Weather = answer.decode()?;
                println!("client: {} is at {} °C", weather.city, weather.celsius);
            }
            // Application codes (400-1999) come back as they were returned.
            Err(err) if err.code() == Some(404) => {
                println!("client: {}", err.server_message().unwrap_or("not found"))
            }
            Err(err) => return Err(err.into()),
        }
    }
    let missing = client.rpc("weather.set", ()).await.unwrap_err();
    println!("client: calling an unknown method: {missing}");
    client.close().await;
    Ok(())
}
